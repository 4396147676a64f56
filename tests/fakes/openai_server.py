"""A fake OpenAI-compatible HTTP server for tests (standard library only).

It serves ``POST /v1/chat/completions`` and ``POST /v1/embeddings`` in the JSON shape the
official ``openai`` SDK parses, from a queue of scripted responses (replies, HTTP errors,
slow replies, dropped connections) or, when the queue is empty, from a deterministic default
responder. It keeps its own thread-safe accounting, in particular ``billed_tokens``: the sum
of prompt + completion tokens of every response it actually finished writing to a socket.

Two ways to run it:

* in-process: ``FakeOpenAIServer().start()`` (or the ``fake_openai`` fixture from
  ``tests.fakes.fixtures``) - a ``ThreadingHTTPServer`` on 127.0.0.1 in a background thread;
* as its own process: ``python -m tests.fakes.openai_server --port 0 --state-file PATH``
  (or ``start_fake_openai_process(...)``), driven over HTTP through ``/_fake/*``.

Both handles offer the same API (``base_url``, ``script``/``reply``/``error``/... helpers,
``stats()``, ``requests``, ``records()``, ``reset()``, ``wait_idle()``); see
``tests/fakes/__init__.py`` for a usage summary.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "CHAT",
    "DEFAULT_COMPLETION_TOKENS",
    "EMBEDDINGS",
    "Drop",
    "Embedding",
    "FakeOpenAIProcess",
    "FakeOpenAIServer",
    "FakeStats",
    "HttpError",
    "Reply",
    "chat_prompt_tokens",
    "default_completion_tokens",
    "embedding_prompt_tokens",
    "item_from_dict",
    "start_fake_openai_process",
]

CHAT = "chat.completions"
EMBEDDINGS = "embeddings"
_API_PATHS = {"/v1/chat/completions": CHAT, "/v1/embeddings": EMBEDDINGS}

DEFAULT_COMPLETION_TOKENS = 16
DEFAULT_EMBEDDING_DIMENSIONS = 8
HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------
# Token counting rules (public so tests can compute expected numbers)
# --------------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """The text of a message ``content``: a string, or a list of parts with ``text``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return str(content)


def chat_prompt_tokens(messages: Iterable[Mapping[str, Any]] | None) -> int:
    """Default prompt token count of a chat request:
    ``total characters of all message contents // 4 + 4 per message``, at least 1."""
    messages = list(messages or [])
    chars = sum(len(_text_of(m.get("content"))) for m in messages if isinstance(m, Mapping))
    return max(1, chars // 4 + 4 * len(messages))


def _embedding_inputs(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(x, int) for x in value):
            return [value]  # one input given as a token array
        return list(value)
    return [] if value is None else [str(value)]


def embedding_prompt_tokens(input_value: Any) -> int:
    """Default prompt token count of an embeddings request: ``total characters of all
    inputs // 4`` (a token-array input counts its length), at least 1."""
    total = 0
    chars = 0
    for item in _embedding_inputs(input_value):
        if isinstance(item, list):
            total += len(item)
        else:
            chars += len(str(item))
    return max(1, total + chars // 4)


def default_completion_tokens(body: Mapping[str, Any],
                              default: int = DEFAULT_COMPLETION_TOKENS) -> int:
    """``min(max_completion_tokens (or max_tokens) if given, else default; default)``."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return max(0, min(value, default))
    return default


# --------------------------------------------------------------------------------------
# Script items
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A successful chat completion.

    ``None`` fields are filled by the default rules: ``content`` is derived from the request
    (a JSON instance of the requested schema for ``response_format`` json_schema),
    ``prompt_tokens`` by :func:`chat_prompt_tokens`, ``completion_tokens`` by
    :func:`default_completion_tokens`. A ``dict``/``list`` content is sent as a JSON string
    (what structured outputs expect). ``delay`` seconds are slept before the response is
    written (a "slow" reply is a reply whose delay exceeds the client's timeout)."""

    kind: ClassVar[str] = "reply"
    content: Any = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str = "stop"
    refusal: str | None = None
    model: str | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    endpoint: str | None = CHAT


@dataclass(frozen=True)
class Embedding:
    """A successful embeddings response. ``vectors=None`` derives one deterministic vector
    per input (``dimensions`` from the request, else the server's default)."""

    kind: ClassVar[str] = "embedding"
    vectors: list[list[float]] | None = None
    prompt_tokens: int | None = None
    model: str | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    endpoint: str | None = EMBEDDINGS


@dataclass(frozen=True)
class HttpError:
    """An HTTP error with OpenAI's error body ``{"error": {"message", "type", "param",
    "code"}}``. ``retry_after`` (seconds) adds a ``Retry-After`` header. Bills nothing."""

    kind: ClassVar[str] = "error"
    status: int = 500
    message: str = "The server had an error while processing your request."
    type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    endpoint: str | None = None


@dataclass(frozen=True)
class Drop:
    """Read the request, then close the connection without any response (after ``delay``).
    ``reset=True`` closes with a TCP RST instead of a clean FIN. Bills nothing."""

    kind: ClassVar[str] = "drop"
    delay: float = 0.0
    reset: bool = False
    endpoint: str | None = None


ScriptItem = Reply | Embedding | HttpError | Drop
_ITEM_TYPES: dict[str, type] = {cls.kind: cls for cls in (Reply, Embedding, HttpError, Drop)}


def item_to_dict(item: ScriptItem) -> dict[str, Any]:
    return {"kind": item.kind, **asdict(item)}


def item_from_dict(data: Mapping[str, Any] | ScriptItem) -> ScriptItem:
    """Build a script item from its JSON form (``{"kind": "reply"|"embedding"|"error"|"drop",
    ...fields}``); script items pass through."""
    if isinstance(data, (Reply, Embedding, HttpError, Drop)):
        return data
    data = dict(data)
    kind = data.pop("kind", "reply")
    cls = _ITEM_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown script item kind {kind!r}")
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown fields for {kind!r}: {sorted(unknown)}")
    return cls(**data)


_ERROR_DEFAULTS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", None),
    404: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def _error_body(message: str, type_: str | None, code: str | None, param: str | None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# --------------------------------------------------------------------------------------
# Stats
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeStats:
    """A snapshot of the server's own accounting.

    ``requests`` counts API requests received per endpoint (``"chat.completions"``,
    ``"embeddings"``, or the path for unknown ones), authorised or not. ``responses_ok``,
    ``errors`` (any 4xx/5xx written, by status in ``errors_by_status``), ``dropped``,
    ``write_failures`` (the client was gone before the response could be written) and
    ``aborted`` (server stopped during a delay) are outcomes. ``billed_*`` add up the usage of
    successful responses that were completely written. ``in_flight`` are API requests
    being handled now; ``queued`` are scripted items not yet used."""

    requests: dict[str, int]
    requests_total: int
    responses_ok: int
    errors: int
    errors_by_status: dict[str, int]
    dropped: int
    write_failures: int
    aborted: int
    in_flight: int
    queued: int
    billed_prompt_tokens: int
    billed_completion_tokens: int
    billed_cached_tokens: int
    billed_tokens: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FakeStats:
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------
# Scripting helpers shared by the in-process server and the subprocess handle
# --------------------------------------------------------------------------------------


class _Scripting:
    """Helpers that append script items; subclasses implement ``_enqueue``."""

    def _enqueue(self, items: list[ScriptItem]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def script(self, *items: ScriptItem | Mapping[str, Any]) -> None:
        """Append items (script objects or their dict form) to the response queue. The
        server takes the first queued item whose ``endpoint`` matches the request's
        (``None`` matches any endpoint)."""
        self._enqueue([item_from_dict(item) for item in items])

    def reply(self, content: Any = None, *, times: int = 1, **kwargs: Any) -> None:
        """Queue a chat completion; see :class:`Reply` for the keyword arguments."""
        self.script(*[Reply(content=content, **kwargs)] * times)

    def slow(self, delay: float, content: Any = None, *, times: int = 1, **kwargs: Any) -> None:
        """Queue a chat completion written only after ``delay`` seconds."""
        self.script(*[Reply(content=content, delay=delay, **kwargs)] * times)

    def embedding(self, vectors: list[list[float]] | None = None, *, times: int = 1,
                  **kwargs: Any) -> None:
        """Queue an embeddings response; see :class:`Embedding`."""
        self.script(*[Embedding(vectors=vectors, **kwargs)] * times)

    def error(self, status: int, message: str | None = None, *, times: int = 1,
              **kwargs: Any) -> None:
        """Queue an HTTP error (any endpoint unless ``endpoint=`` is given)."""
        if message is None:
            message = f"Fake error {status}."
        self.script(*[HttpError(status=status, message=message, **kwargs)] * times)

    def rate_limit(self, retry_after: float | None = 1, message: str = "Rate limit reached.",
                   *, times: int = 1, **kwargs: Any) -> None:
        """Queue a 429 (type ``requests``, code ``rate_limit_exceeded``) with Retry-After."""
        self.error(429, message, retry_after=retry_after, times=times, **kwargs)

    def server_error(self, message: str = "The server had an error while processing your "
                     "request.", *, status: int = 500, times: int = 1, **kwargs: Any) -> None:
        """Queue a 5xx (type ``server_error``)."""
        self.error(status, message, times=times, **kwargs)

    def bad_request(self, message: str = "Invalid request.", *, code: str | None = None,
                    param: str | None = None, times: int = 1, **kwargs: Any) -> None:
        """Queue a 400 (type ``invalid_request_error``)."""
        self.error(400, message, code=code, param=param, times=times, **kwargs)

    def drop(self, *, reset: bool = False, delay: float = 0.0, times: int = 1,
             endpoint: str | None = None) -> None:
        """Queue a dropped connection: the request is read, no response is sent."""
        self.script(*[Drop(reset=reset, delay=delay, endpoint=endpoint)] * times)

    # -- read side, implemented by subclasses -----------------------------------------

    def records(self) -> list[dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def requests(self) -> list[Any]:
        """The parsed JSON bodies of all API requests received, in arrival order."""
        return [record["body"] for record in self.records()]

    def client(self, *, api_key: str = "test", max_retries: int = 0, timeout: float = 10.0,
               **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` client pointed at this server (imports ``openai`` lazily)."""
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=api_key,  # type: ignore[attr-defined]
                             max_retries=max_retries, timeout=timeout, **kwargs)


# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------


class Responder(Protocol):
    def __call__(self, endpoint: str, body: Any) -> ScriptItem | None: ...


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeOpenAIServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self.server.fake._dispatch(self, "POST")

    def do_GET(self) -> None:  # noqa: N802
        self.server.fake._dispatch(self, "GET")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _BodyError(Exception):
    pass


class FakeOpenAIServer(_Scripting):
    """An in-process fake OpenAI server. ``start()`` binds 127.0.0.1 on ``port`` (0: a free
    one) and serves from a background thread; ``stop()`` shuts it down (also interrupting
    delays). Usable as a context manager.

    ``api_key``: if given, the bearer token must equal it (else any non-empty bearer token
    is accepted). ``responder``: ``callable(endpoint, body) -> script item | None`` consulted
    when no scripted item matches (``None`` falls back to the default responder)."""

    def __init__(self, *, port: int = 0, api_key: str | None = None,
                 responder: Responder | None = None,
                 default_completion_tokens: int = DEFAULT_COMPLETION_TOKENS,
                 embedding_dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS,
                 state_file: str | os.PathLike[str] | None = None) -> None:
        self._requested_port = port
        self.api_key = api_key
        self.responder = responder
        self.default_completion_tokens = default_completion_tokens
        self.embedding_dimensions = embedding_dimensions
        self.state_file = Path(state_file) if state_file else None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._seq = 0
        self._generation = 0
        self._reset_state()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            raise RuntimeError("fake OpenAI server already started")
        self._stop.clear()
        httpd = _HTTPServer((HOST, self._requested_port), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-openai-{self.port}", daemon=True)
        self._thread.start()
        self._write_state_file()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stop.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._write_state_file(stopped=True)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("fake OpenAI server not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (control endpoints live under ``/_fake/``)."""
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: pass as the openai client's ``base_url``."""
        return f"{self.url}/v1"

    # -- control API ------------------------------------------------------------------

    def _reset_state(self) -> None:
        self._queue: list[ScriptItem] = []
        self._records: list[dict[str, Any]] = []
        self._requests: dict[str, int] = {}
        self._counters = dict(responses_ok=0, errors=0, dropped=0, write_failures=0, aborted=0,
                              billed_prompt_tokens=0, billed_completion_tokens=0,
                              billed_cached_tokens=0)
        self._errors_by_status: dict[str, int] = {}
        self._in_flight = 0
        self._sending = 0

    def _enqueue(self, items: list[ScriptItem]) -> None:
        with self._cond:
            self._queue.extend(items)

    def reset(self) -> None:
        """Clear the queue, the counters and the request records (not the responder).
        Requests in flight during a reset are not counted afterwards."""
        with self._cond:
            in_flight = self._in_flight
            sending = self._sending
            self._reset_state()
            self._in_flight = in_flight
            self._sending = sending
            self._generation += 1
        self._write_state_file()

    def set_responder(self, responder: Responder | None) -> None:
        self.responder = responder

    def _snapshot(self) -> FakeStats:
        c = self._counters
        return FakeStats(
            requests=dict(self._requests),
            requests_total=sum(self._requests.values()),
            errors_by_status=dict(self._errors_by_status),
            in_flight=self._in_flight,
            queued=len(self._queue),
            billed_tokens=c["billed_prompt_tokens"] + c["billed_completion_tokens"],
            **c,
        )

    def stats(self) -> FakeStats:
        """The counters. Waits (briefly) for responses being written right now, so a client
        that has received a response always sees it accounted for."""
        with self._cond:
            self._cond.wait_for(lambda: self._sending == 0, timeout=5)
            return self._snapshot()

    def records(self) -> list[dict[str, Any]]:
        """One dict per API request: ``seq, endpoint, method, path, body, authorized,
        outcome`` (``pending|ok|error|dropped|write_failed|aborted``), ``status``,
        ``prompt_tokens``, ``completion_tokens``, ``cached_tokens``, ``billed``."""
        with self._cond:
            self._cond.wait_for(lambda: self._sending == 0, timeout=5)
            return [dict(r) for r in self._records]

    def wait_idle(self, timeout: float = 10.0, *, min_requests: int = 0) -> FakeStats:
        """Wait until at least ``min_requests`` API requests arrived and none is in flight
        (e.g. a slow response whose client already timed out has been written). Raises
        ``TimeoutError`` after ``timeout`` seconds."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._in_flight == 0 and self._sending == 0
                and sum(self._requests.values()) >= min_requests,
                timeout=timeout,
            )
            if not ok:
                raise TimeoutError(f"fake OpenAI server not idle after {timeout}s: "
                                   f"{self._snapshot()}")
            return self._snapshot()

    # -- state file (subprocess mode) -------------------------------------------------

    def _write_state_file(self, *, stopped: bool = False) -> None:
        if self.state_file is None:
            return
        with self._cond:
            stats = self._snapshot().as_dict()
        state = {"pid": os.getpid(), "ready": not stopped, "stopped": stopped,
                 "stats": stats}
        if self._httpd is not None:
            state.update(host=HOST, port=self.port, url=self.url, base_url=self.base_url)
        with self._state_lock:
            tmp = self.state_file.with_name(f".{self.state_file.name}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(state), encoding="utf-8")
            os.replace(tmp, self.state_file)

    # -- request handling -------------------------------------------------------------

    def _dispatch(self, handler: _Handler, method: str) -> None:
        handler.close_connection = True
        path = urlsplit(handler.path).path.rstrip("/") or "/"
        if path.startswith("/_fake"):
            self._control(handler, method, path)
            return
        with self._cond:
            self._in_flight += 1
            generation = self._generation
        try:
            self._api(handler, method, path, generation)
        finally:
            with self._cond:
                self._in_flight -= 1  # reset() carries in-flight requests over
                self._cond.notify_all()
            self._write_state_file()

    def _api(self, handler: _Handler, method: str, path: str, generation: int) -> None:
        endpoint = _API_PATHS.get(path, path)
        try:
            raw = _read_body(handler)
        except _BodyError:
            raw = None
        body: Any = None
        parse_error = None
        if raw is not None:
            try:
                body = json.loads(raw) if raw else None
            except ValueError as exc:
                parse_error = f"We could not parse the JSON body of your request. ({exc})"
        auth = handler.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        authorized = bool(token) and (self.api_key is None or token == self.api_key)

        with self._cond:
            self._seq += 1
            record = {"seq": self._seq, "endpoint": endpoint, "method": method, "path": path,
                      "body": body, "authorized": authorized, "outcome": "pending",
                      "status": None, "prompt_tokens": 0, "completion_tokens": 0,
                      "cached_tokens": 0, "billed": False, "received_at": time.time()}
            self._records.append(record)
            self._requests[endpoint] = self._requests.get(endpoint, 0) + 1
            seq = self._seq

        def error(status: int, message: str, type_: str | None = None,
                  code: str | None = None) -> None:
            item = HttpError(status=status, message=message, type=type_, code=code)
            self._send_error(handler, record, item, generation)

        if not authorized:
            message = ("You didn't provide an API key. You need to provide your API key in an "
                       "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                       "YOUR_KEY)." if not token else
                       f"Incorrect API key provided: {token[:3]}***.")
            error(401, message)
            return
        if endpoint not in (CHAT, EMBEDDINGS) or method != "POST":
            error(404, f"Invalid URL ({method} {handler.path})")
            return
        if raw is None:
            error(400, "Could not read the request body.")
            return
        if parse_error is not None or not isinstance(body, dict):
            error(400, parse_error or "The request body must be a JSON object.")
            return
        if body.get("stream"):
            error(400, "The fake OpenAI server does not support stream=true.", code="unsupported")
            return

        item = self._next_item(endpoint, body)
        if item.delay and item.delay > 0 and self._stop.wait(item.delay):
            self._finish(record, generation, outcome="aborted", counter="aborted")
            return
        if isinstance(item, Drop):
            self._drop(handler, item)
            self._finish(record, generation, outcome="dropped", counter="dropped")
            return
        if isinstance(item, HttpError):
            self._send_error(handler, record, item, generation)
            return
        if endpoint == CHAT:
            if not isinstance(item, Reply):
                error(500, f"Fake script item {item.kind!r} cannot answer {endpoint}.")
                return
            payload, usage = self._chat_response(body, item, seq)
        else:
            if not isinstance(item, Embedding):
                error(500, f"Fake script item {item.kind!r} cannot answer {endpoint}.")
                return
            payload, usage = self._embedding_response(body, item)
        self._send_ok(handler, record, payload, usage, item.headers, generation, seq)

    def _next_item(self, endpoint: str, body: dict) -> ScriptItem:
        with self._cond:
            for index, item in enumerate(self._queue):
                if item.endpoint is None or item.endpoint == endpoint:
                    return self._queue.pop(index)
        if self.responder is not None:
            item = self.responder(endpoint, body)
            if item is not None:
                return item_from_dict(item)
        return Reply() if endpoint == CHAT else Embedding()

    # -- responses --------------------------------------------------------------------

    def _chat_response(self, body: dict, item: Reply, seq: int) -> tuple[dict, dict]:
        prompt = item.prompt_tokens
        if prompt is None:
            prompt = chat_prompt_tokens(body.get("messages"))
        completion = item.completion_tokens
        if completion is None:
            completion = default_completion_tokens(body, self.default_completion_tokens)
        content = item.content
        if content is None and item.refusal is None:
            content = _default_chat_content(body)
        if content is not None and not isinstance(content, str):
            content = json.dumps(content)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": item.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": item.reasoning_tokens,
                                          "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
        }
        payload = {
            "id": f"chatcmpl-fake{seq:06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": item.model or body.get("model") or "fake-model",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": item.refusal,
                            "annotations": []},
                "logprobs": None,
                "finish_reason": item.finish_reason,
            }],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        return payload, usage

    def _embedding_response(self, body: dict, item: Embedding) -> tuple[dict, dict]:
        inputs = _embedding_inputs(body.get("input"))
        vectors = item.vectors
        if vectors is None:
            dims = body.get("dimensions") or self.embedding_dimensions
            vectors = [_default_vector(json.dumps(x, sort_keys=True), int(dims)) for x in inputs]
        prompt = item.prompt_tokens
        if prompt is None:
            prompt = embedding_prompt_tokens(body.get("input"))
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, vector in enumerate(vectors):
            value: Any = list(vector)
            if as_base64:
                value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": value})
        usage = {"prompt_tokens": prompt, "total_tokens": prompt}
        payload = {"object": "list", "data": data,
                   "model": item.model or body.get("model") or "fake-embedding-model",
                   "usage": usage}
        return payload, usage

    def _send_ok(self, handler: _Handler, record: dict, payload: dict, usage: dict,
                 headers: Mapping[str, str], generation: int, seq: int) -> None:
        with self._cond:
            self._sending += 1
        sent = _write_response(handler, 200, payload,
                               {"x-request-id": f"req_fake{seq:06d}", **headers})
        prompt = int(usage.get("prompt_tokens", 0))
        completion = int(usage.get("completion_tokens", 0))
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        with self._cond:
            self._sending -= 1
            record.update(status=200, prompt_tokens=prompt, completion_tokens=completion,
                          cached_tokens=cached)
            if generation == self._generation:
                if sent:
                    record.update(outcome="ok", billed=True)
                    c = self._counters
                    c["responses_ok"] += 1
                    c["billed_prompt_tokens"] += prompt
                    c["billed_completion_tokens"] += completion
                    c["billed_cached_tokens"] += cached
                else:
                    record["outcome"] = "write_failed"
                    self._counters["write_failures"] += 1
            self._cond.notify_all()

    def _send_error(self, handler: _Handler, record: dict, item: HttpError,
                    generation: int) -> None:
        type_default, code_default = _ERROR_DEFAULTS.get(
            item.status, ("server_error" if item.status >= 500 else "invalid_request_error", None))
        payload = _error_body(item.message, item.type or type_default,
                              item.code if item.code is not None else code_default, item.param)
        headers = dict(item.headers)
        if item.retry_after is not None:
            ra = item.retry_after
            headers["retry-after"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        with self._cond:
            self._sending += 1
        sent = _write_response(handler, item.status, payload, headers)
        with self._cond:
            self._sending -= 1
            record["status"] = item.status
            if generation == self._generation:
                if sent:
                    record["outcome"] = "error"
                    self._counters["errors"] += 1
                    key = str(item.status)
                    self._errors_by_status[key] = self._errors_by_status.get(key, 0) + 1
                else:
                    record["outcome"] = "write_failed"
                    self._counters["write_failures"] += 1
            self._cond.notify_all()

    def _drop(self, handler: _Handler, item: Drop) -> None:
        handler.close_connection = True
        conn = handler.connection
        with contextlib.suppress(OSError):
            if item.reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            else:
                conn.shutdown(socket.SHUT_RDWR)

    def _finish(self, record: dict, generation: int, *, outcome: str, counter: str) -> None:
        with self._cond:
            record["outcome"] = outcome
            if generation == self._generation:
                self._counters[counter] += 1
            self._cond.notify_all()

    # -- control endpoints (/_fake/*) -------------------------------------------------

    def _control(self, handler: _Handler, method: str, path: str) -> None:
        try:
            raw = _read_body(handler)
            data = json.loads(raw) if raw else None
        except (ValueError, _BodyError) as exc:
            _write_response(handler, 400, {"error": f"bad control body: {exc}"}, {})
            return
        query = {k: v[-1] for k, v in parse_qs(urlsplit(handler.path).query).items()}
        try:
            if path == "/_fake/stats" and method == "GET":
                result: Any = self.stats().as_dict()
            elif path == "/_fake/requests" and method == "GET":
                result = self.records()
            elif path == "/_fake/script" and method == "POST":
                items = data.get("items", []) if isinstance(data, dict) else data
                if isinstance(data, dict) and data.get("replace"):
                    with self._cond:
                        self._queue.clear()
                self.script(*(items or []))
                result = {"queued": self.stats().queued}
            elif path == "/_fake/reset" and method == "POST":
                self.reset()
                result = self.stats().as_dict()
            elif path == "/_fake/wait" and method in ("GET", "POST"):
                opts = {**query, **(data if isinstance(data, dict) else {})}
                result = self.wait_idle(float(opts.get("timeout", 10)),
                                        min_requests=int(opts.get("min_requests", 0))).as_dict()
            elif path == "/_fake/health":
                result = {"ok": True, "pid": os.getpid()}
            else:
                _write_response(handler, 404, {"error": f"no control endpoint {method} {path}"},
                                {})
                return
        except TimeoutError as exc:
            _write_response(handler, 408, {"error": str(exc)}, {})
            return
        except (ValueError, TypeError) as exc:
            _write_response(handler, 400, {"error": str(exc)}, {})
            return
        _write_response(handler, 200, result, {})


def _read_body(handler: _Handler) -> bytes:
    headers = handler.headers
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        chunks = []
        while True:
            line = handler.rfile.readline(65537)
            if not line:
                raise _BodyError("connection closed in chunked body")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunk = handler.rfile.read(size)
            if len(chunk) != size:
                raise _BodyError("short chunk")
            chunks.append(chunk)
            handler.rfile.readline(65537)
    try:
        length = int(headers.get("Content-Length") or 0)
    except ValueError as exc:
        raise _BodyError("bad Content-Length") from exc
    data = handler.rfile.read(length) if length > 0 else b""
    if len(data) != length:
        raise _BodyError("short body")
    return data


def _write_response(handler: _Handler, status: int, payload: Any,
                    headers: Mapping[str, str]) -> bool:
    """Write the whole response (status line, headers, body) with one ``sendall``.
    Returns whether it was written completely."""
    body = json.dumps(payload).encode("utf-8")
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    lines = [f"HTTP/1.1 {status} {reason}", "Server: fake-openai",
             f"Date: {formatdate(usegmt=True)}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    handler.close_connection = True
    try:
        handler.wfile.write(data)
        handler.wfile.flush()
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------------------
# Default content
# --------------------------------------------------------------------------------------


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _default_chat_content(body: Mapping[str, Any]) -> str:
    digest = _digest(body.get("messages"))[:12]
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping):
        if response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema") or {}
            return json.dumps(schema_example(schema, seed=digest))
        if response_format.get("type") == "json_object":
            return json.dumps({"fake": digest})
    last_user = ""
    for message in body.get("messages") or []:
        if isinstance(message, Mapping) and message.get("role") == "user":
            last_user = _text_of(message.get("content"))
    return f"fake reply {digest}: {last_user[:200]}"


def schema_example(schema: Mapping[str, Any], *, seed: str = "fake",
                   root: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
    """A deterministic JSON value that validates against a (simple) JSON schema: objects
    with all properties, ``enum``/``const`` first values, strings ``"fake-<seed>"``, numbers
    0, booleans false, empty arrays (or ``minItems`` items), ``$ref`` into ``$defs``."""
    root = schema if root is None else root
    if depth > 32:
        return None
    if "$ref" in schema:
        ref = schema["$ref"]
        target: Any = root
        for part in ref.lstrip("#/").split("/"):
            if part:
                target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return schema_example(target, seed=seed, root=root, depth=depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if options:
            non_null = [o for o in options if o.get("type") != "null"] or options
            return schema_example(non_null[0], seed=seed, root=root, depth=depth + 1)
    type_ = schema.get("type")
    if isinstance(type_, list):
        type_ = next((t for t in type_ if t != "null"), "null")
    if type_ == "object" or (type_ is None and "properties" in schema):
        return {name: schema_example(sub, seed=seed, root=root, depth=depth + 1)
                for name, sub in (schema.get("properties") or {}).items()}
    if type_ == "array":
        items = schema.get("items") or {}
        return [schema_example(items, seed=seed, root=root, depth=depth + 1)
                for _ in range(int(schema.get("minItems") or 0))]
    if type_ == "string":
        return f"fake-{seed}"
    if type_ == "integer":
        return int(schema.get("minimum") or 0)
    if type_ == "number":
        return float(schema.get("minimum") or 0)
    if type_ == "boolean":
        return False
    return None


def _default_vector(text: str, dims: int) -> list[float]:
    out: list[float] = []
    counter = 0
    while len(out) < dims:
        block = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    out = out[:dims]
    norm = math.sqrt(sum(x * x for x in out)) or 1.0
    # round-trip through float32 so float and base64 encodings give identical values
    return [struct.unpack("<f", struct.pack("<f", x / norm))[0] for x in out]


# --------------------------------------------------------------------------------------
# Subprocess mode
# --------------------------------------------------------------------------------------


class FakeOpenAIProcess(_Scripting):
    """Handle on a fake server running in another process (see
    :func:`start_fake_openai_process`); same API as :class:`FakeOpenAIServer`, over HTTP."""

    def __init__(self, url: str, *, process: subprocess.Popen | None = None,
                 state_file: Path | None = None) -> None:
        self.url = url.rstrip("/")
        self.base_url = f"{self.url}/v1"
        self.port = int(self.url.rsplit(":", 1)[1])
        self.process = process
        self.state_file = state_file

    def _call(self, method: str, path: str, data: Any = None, timeout: float = 30.0) -> Any:
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=body, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            if exc.code == 408:
                raise TimeoutError(detail) from None
            raise RuntimeError(
                f"fake OpenAI control {method} {path}: {exc.code} {detail}") from None

    def _enqueue(self, items: list[ScriptItem]) -> None:
        self._call("POST", "/_fake/script", {"items": [item_to_dict(i) for i in items]})

    def stats(self) -> FakeStats:
        return FakeStats.from_dict(self._call("GET", "/_fake/stats"))

    def records(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_fake/requests")

    def reset(self) -> None:
        self._call("POST", "/_fake/reset", {})

    def wait_idle(self, timeout: float = 10.0, *, min_requests: int = 0) -> FakeStats:
        data = self._call("POST", "/_fake/wait", {"timeout": timeout, "min_requests": min_requests},
                          timeout=timeout + 10)
        return FakeStats.from_dict(data)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Terminate the server process (SIGTERM, then SIGKILL) and return its exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        return proc.returncode

    def __enter__(self) -> FakeOpenAIProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_fake_openai_process(state_file: str | os.PathLike[str] | None = None, *,
                              port: int = 0, api_key: str | None = None,
                              script: Iterable[ScriptItem | Mapping[str, Any]] = (),
                              startup_timeout: float = 20.0,
                              log_file: str | os.PathLike[str] | None = None,
                              extra_args: Iterable[str] = ()) -> FakeOpenAIProcess:
    """Start ``python -m tests.fakes.openai_server`` in a new process and wait until it
    serves. ``state_file`` (default: a temporary file) receives ``{"pid", "port", "url",
    "base_url", "ready", "stats"}``; its stderr/stdout go to ``log_file`` (default:
    ``<state_file>.log``). Returns a :class:`FakeOpenAIProcess`; call ``.stop()``."""
    if state_file is None:
        fd, name = tempfile.mkstemp(prefix="fake-openai-", suffix=".json")
        os.close(fd)
        state_file = name
    state_path = Path(state_file)
    state_path.unlink(missing_ok=True)
    log_path = Path(log_file) if log_file else state_path.with_name(state_path.name + ".log")
    cmd = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port),
           "--state-file", str(state_path)]
    if api_key:
        cmd += ["--api-key", api_key]
    cmd += list(extra_args)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + startup_timeout
    while True:
        state = None
        with contextlib.suppress(FileNotFoundError, ValueError):
            state = json.loads(state_path.read_text(encoding="utf-8"))
        if state and state.get("ready") and state.get("pid") == proc.pid:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
            raise RuntimeError(f"fake OpenAI server process did not start "
                               f"(exit {proc.returncode}):\n{log_text}")
        time.sleep(0.02)
    handle = FakeOpenAIProcess(state["url"], process=proc, state_file=state_path)
    if script:
        handle.script(*script)
    return handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.openai_server",
                                     description="Fake OpenAI-compatible server for tests.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: free one)")
    parser.add_argument("--state-file", help="JSON file with pid/port/base_url and counters, "
                        "rewritten after every request")
    parser.add_argument("--api-key", help="require this bearer token (default: any)")
    parser.add_argument("--script-file", help="JSON list of script items to preload")
    parser.add_argument("--default-completion-tokens", type=int,
                        default=DEFAULT_COMPLETION_TOKENS)
    parser.add_argument("--embedding-dimensions", type=int, default=DEFAULT_EMBEDDING_DIMENSIONS)
    args = parser.parse_args(argv)

    server = FakeOpenAIServer(port=args.port, api_key=args.api_key, state_file=args.state_file,
                              default_completion_tokens=args.default_completion_tokens,
                              embedding_dimensions=args.embedding_dimensions)
    if args.script_file:
        server.script(*json.loads(Path(args.script_file).read_text(encoding="utf-8")))
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    print(f"fake OpenAI server listening on {server.base_url} (pid {os.getpid()})", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
