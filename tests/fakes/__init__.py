"""Test fakes. ``openai_server``: a fake OpenAI-compatible HTTP server (standard library only).

This package imports nothing on purpose, so ``python -m tests.fakes.openai_server`` runs cleanly.

Fixtures (``tests/fakes/fixtures.py``; import them in a conftest with
``from tests.fakes.fixtures import fake_openai, fake_openai_process  # noqa: F401``)::

    def test_something(fake_openai):
        client = openai.OpenAI(base_url=fake_openai.base_url, api_key="test", max_retries=0)
        # or: client = fake_openai.client(timeout=2)
        fake_openai.reply("hello", prompt_tokens=10, completion_tokens=3, cached_tokens=4)
        fake_openai.reply({"answer": 42})          # structured output: sent as a JSON string
        fake_openai.rate_limit(retry_after=1)      # 429 + Retry-After -> openai.RateLimitError
        fake_openai.server_error()                 # 500 -> openai.InternalServerError
        fake_openai.bad_request("bad", code="x")   # 400 -> openai.BadRequestError
        fake_openai.slow(2.0)                      # reply after 2 s: APITimeoutError if timeout<2
        fake_openai.drop()                         # close without response -> APIConnectionError
        fake_openai.embedding([[0.1, 0.2]])
        ...
        fake_openai.wait_idle()                    # let slow responses finish
        assert fake_openai.stats().billed_tokens <= LIMIT
        assert fake_openai.requests[0]["model"] == "gpt-x"

When the queue is empty a deterministic default responder answers (see
``tests.fakes.openai_server.chat_prompt_tokens`` / ``default_completion_tokens``).

Multi-process: ``start_fake_openai_process(state_file)`` (or the ``fake_openai_process``
fixture) runs ``python -m tests.fakes.openai_server --port 0 --state-file PATH`` and returns
a handle with the same API, talking to ``/_fake/stats``, ``/_fake/requests``,
``/_fake/script``, ``/_fake/reset`` and ``/_fake/wait`` over HTTP.
"""
