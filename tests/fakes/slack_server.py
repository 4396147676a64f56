"""A fake Slack Web API server for tests (standard library only).

The real ``slack_sdk.WebClient`` talks to it over HTTP: point ``base_url`` (FlowOps reads
``SLACK_API_URL``) at ``server.base_url``. It serves the methods FlowOps calls:

* ``auth.test`` - who the bot is (``BOT_USER_ID``, ``BOT_ID``);
* ``conversations.list`` - the configured channels, paged by ``cursor`` and ``limit``;
* ``chat.postMessage`` and ``chat.update`` - recorded in ``server.posts`` / ``server.updates``.

Every call must carry ``Authorization: Bearer <token>`` with the server's token, as Slack
checks it; a wrong one answers ``invalid_auth``. ``server.fail(method, error=...)`` makes
the next call of a method answer ``{"ok": false, "error": ...}`` (or an HTTP status), to
test error paths. Inbound events are signed with slack-sdk's own ``SignatureVerifier``:
``signed_headers(secret, body)``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.signature import SignatureVerifier

BOT_TOKEN = "xoxb-fake-token"
BOT_USER_ID = "UBOT0001"
BOT_ID = "BBOT0001"
TEAM_ID = "T0FLOWOPS"
DEFAULT_CHANNELS = {"C0SUPPORT": "support", "C0GENERAL": "general", "C0SALES": "sales"}


@dataclass
class Failure:
    error: str = "internal_error"
    status: int = 200


@dataclass
class SlackState:
    token: str
    channels: dict[str, str]
    posts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    failures: dict[str, deque[Failure]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_ts: int = 0


class FakeSlackServer:
    """In-process fake of Slack's Web API on 127.0.0.1:<free port>."""

    def __init__(self, *, token: str = BOT_TOKEN, channels: dict[str, str] | None = None):
        self.state = SlackState(token=token, channels=dict(channels or DEFAULT_CHANNELS))
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/api/"

    @property
    def posts(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.posts)

    @property
    def updates(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.updates)

    def calls(self, method: str | None = None) -> list[str]:
        with self.state.lock:
            return [c for c in self.state.calls if method is None or c == method]

    def fail(self, method: str, *, error: str = "internal_error", status: int = 200,
             times: int = 1) -> None:
        with self.state.lock:
            queue = self.state.failures.setdefault(method, deque())
            queue.extend(Failure(error=error, status=status) for _ in range(times))

    def start(self) -> FakeSlackServer:
        state = self.state
        handler = type("Handler", (_Handler,), {"state": state})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True,
                         name="fake-slack").start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class _Handler(BaseHTTPRequestHandler):
    state: SlackState

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        self._serve(path, {key: values[-1] for key, values in parse_qs(query).items()})

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        params = {key: values[-1] for key, values in parse_qs(query).items()}
        self._serve(path, {**params, **self._body_params()})

    def _serve(self, path: str, params: dict[str, Any]) -> None:
        method = path.removeprefix("/api/").strip("/")
        with self.state.lock:
            self.state.calls.append(method)
            failure = self._take_failure(method)
        if failure is not None:
            self._answer({"ok": False, "error": failure.error}, status=failure.status)
            return
        if self.headers.get("Authorization") != f"Bearer {self.state.token}":
            self._answer({"ok": False, "error": "invalid_auth"})
            return
        answer = getattr(self, "_" + method.replace(".", "_"), None)
        if answer is None:
            self._answer({"ok": False, "error": "unknown_method"}, status=404)
            return
        self._answer(answer(params))

    def _take_failure(self, method: str) -> Failure | None:
        queue = self.state.failures.get(method)
        return queue.popleft() if queue else None

    def _body_params(self) -> dict[str, Any]:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Type", "").startswith("application/json"):
            return json.loads(body or b"{}")
        return {key: values[-1] for key, values in parse_qs(body.decode()).items()}

    def _answer(self, payload: dict[str, Any], *, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "team_id": TEAM_ID,
                "user": "flowops"}

    def _conversations_list(self, params: dict[str, Any]) -> dict[str, Any]:
        items = sorted(self.state.channels.items())
        start = int(params.get("cursor") or 0)
        limit = int(params.get("limit") or 100)
        page = items[start:start + limit]
        cursor = str(start + limit) if start + limit < len(items) else ""
        return {"ok": True,
                "channels": [{"id": cid, "name": name, "is_channel": True}
                             for cid, name in page],
                "response_metadata": {"next_cursor": cursor}}

    def _chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if channel not in self.state.channels:
            return {"ok": False, "error": "channel_not_found"}
        with self.state.lock:
            self.state.next_ts += 1
            ts = f"{int(time.time())}.{self.state.next_ts:06d}"
            post = {**params, "ts": ts}
            self.state.posts.append(post)
        return {"ok": True, "channel": channel, "ts": ts,
                "message": {"text": params.get("text"), "ts": ts, "bot_id": BOT_ID}}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            self.state.updates.append(dict(params))
        return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}


def signed_headers(secret: str, body: bytes | str, *, timestamp: int | None = None,
                   content_type: str = "application/json") -> dict[str, str]:
    """Headers of a request signed as Slack signs it, with slack-sdk's own code."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    text = body.decode() if isinstance(body, bytes) else body
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=text)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature,
            "Content-Type": content_type}


def message_event(text: str, *, channel: str = "C0SUPPORT", user: str = "U0CUSTOMER",
                  event_id: str = "Ev0001", ts: str = "1700000000.000100",
                  kind: str = "message", **extra: Any) -> dict[str, Any]:
    """An Events API ``event_callback`` envelope as Slack sends it."""
    event = {"type": kind, "text": text, "user": user, "channel": channel, "ts": ts,
             "event_ts": ts, "channel_type": "channel", **extra}
    return {"token": "verification-token-unused", "team_id": TEAM_ID, "api_app_id": "A0APP",
            "event": event, "type": "event_callback", "event_id": event_id,
            "event_time": int(float(ts))}
