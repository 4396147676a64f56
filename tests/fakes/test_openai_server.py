"""Tests of the fake OpenAI server, driven by the real ``openai`` SDK over real HTTP."""

from __future__ import annotations

import base64
import json
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from pydantic import BaseModel

from tests.fakes.openai_server import (
    CHAT,
    EMBEDDINGS,
    Drop,
    Embedding,
    FakeOpenAIServer,
    HttpError,
    Reply,
    chat_prompt_tokens,
    default_completion_tokens,
    embedding_prompt_tokens,
    start_fake_openai_process,
)

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to the fake server, please."},
]


def make_client(fake, timeout: float = 5.0, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0,
                         timeout=timeout, **kwargs)


def chat(client: openai.OpenAI, **kwargs):
    kwargs.setdefault("model", "fake-model")
    kwargs.setdefault("messages", MESSAGES)
    return client.chat.completions.create(**kwargs)


class Verdict(BaseModel):
    label: str
    score: int
    reasons: list[str]


# -- successful responses ---------------------------------------------------------------


def test_scripted_chat_completion_usage_is_parsed(fake_openai):
    fake_openai.reply("Hello!", prompt_tokens=120, completion_tokens=7, cached_tokens=64,
                      reasoning_tokens=3)
    completion = chat(make_client(fake_openai), temperature=0)

    assert completion.object == "chat.completion"
    assert completion.model == "fake-model"
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello!"
    assert choice.message.refusal is None
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (120, 7, 127)
    assert usage.prompt_tokens_details.cached_tokens == 64
    assert usage.completion_tokens_details.reasoning_tokens == 3

    stats = fake_openai.stats()
    assert stats.requests == {CHAT: 1}
    assert stats.responses_ok == 1
    assert stats.billed_tokens == 127
    assert (stats.billed_prompt_tokens, stats.billed_completion_tokens) == (120, 7)
    assert stats.billed_cached_tokens == 64
    assert stats.queued == 0
    assert fake_openai.requests == [{"model": "fake-model", "messages": MESSAGES,
                                     "temperature": 0}]


def test_default_responder_is_deterministic_and_counts_tokens(fake_openai):
    client = make_client(fake_openai)
    first = chat(client)
    again = chat(client)
    capped = chat(client, max_completion_tokens=5)
    other = chat(client, messages=[{"role": "user", "content": "something else"}])

    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content
    assert "Say hello to the fake server, please." in first.choices[0].message.content

    chars = sum(len(m["content"]) for m in MESSAGES)
    assert first.usage.prompt_tokens == chat_prompt_tokens(MESSAGES) == chars // 4 + 8
    assert first.usage.completion_tokens == 16
    assert capped.usage.completion_tokens == 5
    assert other.usage.prompt_tokens == len("something else") // 4 + 4
    assert default_completion_tokens({"max_tokens": 100}) == 16
    assert chat_prompt_tokens([]) == 1

    expected = sum(c.usage.total_tokens for c in (first, again, capped, other))
    assert fake_openai.stats().billed_tokens == expected
    assert [r["outcome"] for r in fake_openai.records()] == ["ok"] * 4


def test_structured_output_with_parse(fake_openai):
    client = make_client(fake_openai)
    fake_openai.reply({"label": "spam", "score": 9, "reasons": ["caps", "links"]},
                      prompt_tokens=50, completion_tokens=12)
    completion = client.chat.completions.parse(model="fake-model", messages=MESSAGES,
                                               response_format=Verdict)
    parsed = completion.choices[0].message.parsed
    assert parsed == Verdict(label="spam", score=9, reasons=["caps", "links"])
    assert json.loads(completion.choices[0].message.content) == parsed.model_dump()

    request = fake_openai.requests[0]
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["name"] == "Verdict"

    # With nothing scripted, the default responder answers with an instance of the schema.
    default = client.chat.completions.parse(model="fake-model", messages=MESSAGES,
                                            response_format=Verdict)
    assert isinstance(default.choices[0].message.parsed, Verdict)
    assert fake_openai.stats().billed_tokens == 62 + default.usage.total_tokens


def test_embeddings(fake_openai):
    client = make_client(fake_openai)
    inputs = ["first text", "the second, longer text"]

    # The SDK asks for base64 by default and decodes it.
    default = client.embeddings.create(model="fake-embed", input=inputs)
    assert [d.index for d in default.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in default.data)
    assert default.usage.prompt_tokens == embedding_prompt_tokens(inputs)
    assert default.usage.total_tokens == default.usage.prompt_tokens
    assert fake_openai.requests[0]["encoding_format"] == "base64"

    as_floats = client.embeddings.create(model="fake-embed", input=inputs,
                                         encoding_format="float", dimensions=8)
    assert [d.embedding for d in as_floats.data] == [d.embedding for d in default.data]

    fake_openai.embedding([[0.5, -0.25, 1.0]], prompt_tokens=11)
    scripted = client.embeddings.create(model="fake-embed", input="x", encoding_format="float")
    assert scripted.data[0].embedding == [0.5, -0.25, 1.0]
    assert scripted.usage.prompt_tokens == 11

    stats = fake_openai.stats()
    assert stats.requests == {EMBEDDINGS: 3}
    assert stats.billed_tokens == 2 * default.usage.prompt_tokens + 11
    assert stats.billed_completion_tokens == 0


def test_base64_embedding_wire_format(fake_openai):
    body = json.dumps({"model": "m", "input": "abc", "encoding_format": "base64",
                       "dimensions": 4}).encode()
    request = urllib.request.Request(f"{fake_openai.base_url}/embeddings", data=body,
                                     headers={"Authorization": "Bearer k",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        payload = json.loads(response.read())
    raw = base64.b64decode(payload["data"][0]["embedding"])
    assert len(struct.unpack("<4f", raw)) == 4
    assert payload["object"] == "list" and payload["data"][0]["object"] == "embedding"


# -- errors -----------------------------------------------------------------------------


def test_rate_limit_429(fake_openai):
    fake_openai.rate_limit(retry_after=3)
    with pytest.raises(openai.RateLimitError) as info:
        chat(make_client(fake_openai))
    err = info.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "3"
    assert err.code == "rate_limit_exceeded"
    assert err.type == "requests"
    assert "Rate limit reached." in err.message
    stats = fake_openai.stats()
    assert (stats.errors, stats.errors_by_status, stats.billed_tokens) == (1, {"429": 1}, 0)


def test_server_error_500(fake_openai):
    fake_openai.server_error("boom")
    with pytest.raises(openai.InternalServerError) as info:
        chat(make_client(fake_openai))
    assert info.value.status_code == 500
    assert info.value.type == "server_error"
    assert fake_openai.stats().billed_tokens == 0


def test_bad_request_400_carries_the_message(fake_openai):
    fake_openai.bad_request("This model's maximum context length is 8192 tokens.",
                            code="context_length_exceeded", param="messages")
    with pytest.raises(openai.BadRequestError) as info:
        chat(make_client(fake_openai))
    err = info.value
    assert "maximum context length is 8192 tokens" in str(err)
    assert err.message.endswith("This model's maximum context length is 8192 tokens.")
    assert (err.code, err.param, err.type) == ("context_length_exceeded", "messages",
                                               "invalid_request_error")
    assert err.body == {"message": "This model's maximum context length is 8192 tokens.",
                        "type": "invalid_request_error", "param": "messages",
                        "code": "context_length_exceeded"}
    assert fake_openai.stats().billed_tokens == 0


def test_missing_bearer_token_gets_401(fake_openai):
    body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
    request = urllib.request.Request(f"{fake_openai.base_url}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 401
    error = json.loads(info.value.read())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_api_key"
    assert "API key" in error["message"]
    assert fake_openai.records()[0]["authorized"] is False
    assert fake_openai.stats().billed_tokens == 0


def test_wrong_api_key_raises_authentication_error():
    with FakeOpenAIServer(api_key="sk-right") as fake:
        fake.reply("never sent")
        with pytest.raises(openai.AuthenticationError):
            chat(make_client(fake))  # api_key="test"
        ok = chat(openai.OpenAI(base_url=fake.base_url, api_key="sk-right", max_retries=0))
        assert ok.choices[0].message.content == "never sent"  # the 401 consumed no item


def test_streaming_is_refused_and_unknown_paths_404(fake_openai):
    client = make_client(fake_openai)
    with pytest.raises(openai.BadRequestError):
        chat(client, stream=True)
    with pytest.raises(openai.NotFoundError):
        client.models.list()
    assert fake_openai.stats().errors_by_status == {"400": 1, "404": 1}


# -- timeouts and dropped connections ---------------------------------------------------


def test_slow_response_times_out_but_is_billed_once_written(fake_openai):
    fake_openai.slow(1.0, "late", prompt_tokens=30, completion_tokens=10)
    with pytest.raises(openai.APITimeoutError):
        chat(make_client(fake_openai, timeout=0.2))
    # The server is still sleeping: nothing billed yet.
    assert fake_openai.stats().in_flight == 1
    assert fake_openai.stats().billed_tokens == 0

    stats = fake_openai.wait_idle(timeout=10)
    assert stats.billed_tokens == 40  # the provider finished (and billed) it anyway
    assert stats.responses_ok == 1
    assert fake_openai.records()[0]["outcome"] == "ok"


def test_delay_within_timeout_succeeds(fake_openai):
    fake_openai.reply("ok", delay=0.3, prompt_tokens=1, completion_tokens=1)
    completion = chat(make_client(fake_openai, timeout=5))
    assert completion.choices[0].message.content == "ok"
    assert fake_openai.stats().billed_tokens == 2


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_dropped_connection_raises_connection_error_and_bills_nothing(fake_openai, reset):
    fake_openai.drop(reset=reset)
    with pytest.raises(openai.APIConnectionError) as info:
        chat(make_client(fake_openai))
    assert not isinstance(info.value, openai.APITimeoutError)
    stats = fake_openai.wait_idle()
    assert (stats.dropped, stats.billed_tokens, stats.responses_ok) == (1, 0, 0)
    assert fake_openai.requests[0]["messages"] == MESSAGES  # the request was read


def test_billing_across_a_mixed_script(fake_openai):
    client = make_client(fake_openai, timeout=0.2)
    fake_openai.script(
        Reply("a", prompt_tokens=10, completion_tokens=5),
        HttpError(status=429, message="slow down", retry_after=1),
        Drop(),
        Reply("late", prompt_tokens=7, completion_tokens=3, delay=0.6),
        HttpError(status=500),
        {"kind": "reply", "content": "b", "prompt_tokens": 2, "completion_tokens": 2},
    )
    outcomes = []
    for _ in range(6):
        try:
            chat(client)
            outcomes.append("ok")
        except openai.APIError as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes == ["ok", "RateLimitError", "APIConnectionError", "APITimeoutError",
                        "InternalServerError", "ok"]
    stats = fake_openai.wait_idle()
    assert stats.billed_tokens == 15 + 10 + 4
    assert stats.errors == 2 and stats.dropped == 1 and stats.responses_ok == 3
    assert [r["billed"] for r in fake_openai.records()] == [True, False, False, True, False,
                                                            True]


# -- scripting mechanics ----------------------------------------------------------------


def test_items_are_matched_to_their_endpoint(fake_openai):
    client = make_client(fake_openai)
    fake_openai.script(Embedding([[1.0, 0.0]], prompt_tokens=3), Reply("chat reply"))
    assert chat(client).choices[0].message.content == "chat reply"
    emb = client.embeddings.create(model="e", input="x", encoding_format="float")
    assert emb.data[0].embedding == [1.0, 0.0]

    fake_openai.error(503, "overloaded")  # endpoint=None: whichever request comes first
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="e", input="x")
    assert fake_openai.stats().queued == 0


def test_times_and_pluggable_responder(fake_openai):
    client = make_client(fake_openai)
    fake_openai.reply("same", times=2)
    assert [chat(client).choices[0].message.content for _ in range(2)] == ["same", "same"]

    def responder(endpoint, body):
        if endpoint == CHAT:
            return Reply(content=f"echo {body['messages'][-1]['content']}", prompt_tokens=1,
                         completion_tokens=1)
        return None

    fake_openai.set_responder(responder)
    assert chat(client).choices[0].message.content == f"echo {MESSAGES[-1]['content']}"
    assert client.embeddings.create(model="e", input="x").usage.prompt_tokens == 1


def test_reset_clears_queue_counters_and_requests(fake_openai):
    client = make_client(fake_openai)
    fake_openai.reply("x", prompt_tokens=5, completion_tokens=5)
    chat(client)
    fake_openai.reply("left over")
    fake_openai.reset()
    stats = fake_openai.stats()
    assert (stats.requests_total, stats.billed_tokens, stats.queued) == (0, 0, 0)
    assert fake_openai.requests == []


def test_concurrent_requests_are_accounted_exactly(fake_openai):
    fake_openai.reply(prompt_tokens=3, completion_tokens=2, delay=0.05, times=20)
    client = make_client(fake_openai)
    totals: list[int] = []
    lock = threading.Lock()

    def worker():
        for _ in range(5):
            total = chat(client).usage.total_tokens
            with lock:
                totals.append(total)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(totals) == 40
    stats = fake_openai.wait_idle()
    assert stats.requests == {CHAT: 40}
    assert stats.billed_tokens == sum(totals)
    assert totals.count(5) == 20


# -- other processes --------------------------------------------------------------------


def test_in_process_server_is_reachable_from_another_process(fake_openai):
    fake_openai.reply("from afar", prompt_tokens=4, completion_tokens=4)
    code = textwrap.dedent(f"""
        import openai
        client = openai.OpenAI(base_url={fake_openai.base_url!r}, api_key="k", max_retries=0)
        reply = client.chat.completions.create(
            model="m", messages=[{{"role": "user", "content": "hi"}}])
        print(reply.choices[0].message.content)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "from afar"
    assert fake_openai.stats().billed_tokens == 8


def test_subprocess_mode_with_stats_over_http(fake_openai_process, tmp_path):
    fake = fake_openai_process
    client = make_client(fake, timeout=0.3)
    fake.reply("one", prompt_tokens=10, completion_tokens=2, cached_tokens=4)
    fake.rate_limit(retry_after=2)
    fake.slow(1.0, prompt_tokens=6, completion_tokens=1)
    fake.drop()

    completion = chat(client)
    assert completion.usage.prompt_tokens_details.cached_tokens == 4
    with pytest.raises(openai.RateLimitError):
        chat(client)
    with pytest.raises(openai.APITimeoutError):
        chat(client)
    with pytest.raises(openai.APIConnectionError):
        chat(client)
    parsed = client.chat.completions.parse(model="m", messages=MESSAGES, response_format=Verdict)
    assert isinstance(parsed.choices[0].message.parsed, Verdict)

    stats = fake.wait_idle(timeout=10, min_requests=5)
    assert stats.requests == {CHAT: 5}
    assert stats.billed_tokens == 12 + 7 + parsed.usage.total_tokens
    assert stats.billed_cached_tokens == 4
    assert (stats.errors_by_status, stats.dropped) == ({"429": 1}, 1)
    assert len(fake.requests) == 5 and fake.requests[0]["messages"] == MESSAGES

    state = json.loads((tmp_path / "fake_openai.json").read_text())
    assert state["ready"] and state["base_url"] == fake.base_url
    assert state["stats"]["billed_tokens"] == stats.billed_tokens

    fake.reset()
    assert fake.stats().requests_total == 0
    assert fake.stop() == 0
    assert json.loads((tmp_path / "fake_openai.json").read_text())["stopped"] is True


def test_subprocess_cli_with_explicit_port(tmp_path: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with start_fake_openai_process(tmp_path / "state.json", port=port, api_key="sk-x",
                                   script=[Reply("preloaded", prompt_tokens=1,
                                                 completion_tokens=1)]) as fake:
        assert fake.base_url == f"http://127.0.0.1:{port}/v1"
        client = openai.OpenAI(base_url=fake.base_url, api_key="sk-x", max_retries=0,
                               timeout=5)
        assert chat(client).choices[0].message.content == "preloaded"
        with pytest.raises(openai.AuthenticationError):
            chat(make_client(fake))
        assert fake.stats().billed_tokens == 2
