"""The SDK's public surface: ``__all__`` is complete, and it imports without Django."""

import subprocess
import sys

import flowops


def test_all_lists_every_public_member():
    public = {name for name in dir(flowops) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(flowops, name)).__name__ == "module"}

    assert sorted(public - modules) == sorted(flowops.__all__)


def test_the_algebra_imports_and_plans_without_django():
    code = (
        "import sys\n"
        "from flowops import Step, step\n"
        "from flowops._plan import Plan\n"
        "@step\n"
        "def a(x: int) -> int:\n"
        "    return x\n"
        "plan = Plan(a >> Step.map_over('each', a))\n"
        "print([r.key for r in plan.initial_rows()])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'celery')))\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['a', 'each', 'each@items']", "[]"]
