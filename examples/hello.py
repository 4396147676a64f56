"""The seed's hello pipeline: `flowops run examples/hello.py --input FlowOps`."""

from flowops import step


@step
async def hello(name: str) -> str:
    return f"Hello, {name}!"


# The `flowops run` CLI looks for a top-level variable named "pipeline"
pipeline = hello
