"""Model providers: ``openai:<model>`` through the official SDK, and ``offline``.

A provider makes exactly one HTTP attempt per call; FlowOps retries transient errors
itself, reserving the budget again for each attempt (CONTRACTS.md §8), so the OpenAI
client is built with ``max_retries=0``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel

from flowops.exceptions import UserError

DEFAULT_MAX_TOKENS = 1024
OFFLINE = "offline"


class ProviderError(Exception):
    """A provider refused or failed a call. ``billed``: it may have been charged anyway."""

    def __init__(self, message: str, *, transient: bool, billed: bool,
                 retry_after: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.billed = billed
        self.retry_after = retry_after


@dataclass
class Completion:
    output: Any
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    flagged: list[str] = field(default_factory=list)


def default_model() -> str:
    """``FLOWOPS_AI_MODEL``, else ``openai:gpt-4o-mini`` with a key, else ``offline``."""
    configured = os.environ.get("FLOWOPS_AI_MODEL")
    if configured:
        return configured
    return "openai:gpt-4o-mini" if os.environ.get("OPENAI_API_KEY") else OFFLINE


def resolve(model: str | None) -> str:
    """The model a call really uses: an ``openai:`` model without a key falls back to
    ``offline`` with a warning in the embedded default, and is an error in production."""
    name = model or default_model()
    provider = name.partition(":")[0]
    if provider not in ("openai", OFFLINE):
        raise UserError(f"unknown model provider in {name!r}: use openai:<model> or offline")
    if provider == "openai" and not os.environ.get("OPENAI_API_KEY"):
        if _strict():
            raise UserError(f"{name} needs OPENAI_API_KEY (set it, or FLOWOPS_AI_MODEL=offline)")
        warnings.warn(f"OPENAI_API_KEY is not set: {name} answers offline", stacklevel=3)
        return OFFLINE
    return name


def _strict() -> bool:
    try:
        from django.conf import settings

        return bool(settings.configured and getattr(settings, "FLOWOPS_AI_STRICT", False))
    except ImportError:
        return False


def _allowed_hosts() -> list[str] | None:
    try:
        from django.conf import settings

        if settings.configured:
            return getattr(settings, "FLOWOPS_AI_ALLOWED_HOSTS", None)
    except ImportError:
        pass
    return None


class OpenAIProvider:
    """Chat completions (with structured outputs) and embeddings over the ``openai`` SDK."""

    _clients: dict[tuple[str, str], Any] = {}
    _lock = threading.Lock()

    def __init__(self, model_id: str):
        self.model_id = model_id
        self.base_url = os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.cap_param = os.environ.get("FLOWOPS_AI_MAX_TOKENS_PARAM", "max_completion_tokens")
        allowed = _allowed_hosts()
        host = urlparse(self.base_url).hostname or ""
        if allowed is not None and host not in allowed:
            raise UserError(f"provider calls to {host} are not allowed here "
                            f"(FLOWOPS_AI_ALLOWED_HOSTS={allowed}); tests use a local server")

    def client(self) -> Any:
        import openai

        key = (self.base_url, os.environ.get("OPENAI_API_KEY", ""))
        with self._lock:
            if key not in self._clients:
                self._clients[key] = openai.OpenAI(
                    base_url=self.base_url, api_key=key[1], max_retries=0,
                    timeout=float(os.environ.get("FLOWOPS_AI_TIMEOUT", "60")))
            return self._clients[key]

    def complete(self, messages: list[dict], *, max_tokens: int,
                 output_type: type | None) -> Completion:
        kwargs = {"model": self.model_id, "messages": messages, self.cap_param: max_tokens}
        with _translated_errors():
            if _is_model(output_type):
                response = self.client().chat.completions.parse(response_format=output_type,
                                                                **kwargs)
                message = response.choices[0].message
                if message.parsed is None:
                    raise ProviderError(f"no structured output: {message.refusal or 'empty'}",
                                        transient=False, billed=True)
                output = message.parsed
            else:
                response = self.client().chat.completions.create(**kwargs)
                output = response.choices[0].message.content or ""
        usage = response.usage
        cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", 0) or 0
        done = Completion(output=output, prompt_tokens=usage.prompt_tokens,
                          completion_tokens=usage.completion_tokens, cached_tokens=cached)
        if usage.completion_tokens > max_tokens:
            done.flagged.append(f"completion used {usage.completion_tokens} tokens, above "
                                f"the cap of {max_tokens}")
        return done

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        with _translated_errors():
            response = self.client().embeddings.create(model=self.model_id, input=texts)
        return [d.embedding for d in response.data], response.usage.prompt_tokens


class _translated_errors:
    """The SDK's exceptions as ``ProviderError``: transient or not, billed or not."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None:
            return False
        import openai

        if isinstance(exc, openai.APITimeoutError):
            raise ProviderError(f"timed out: {exc}", transient=True, billed=True) from exc
        if isinstance(exc, openai.APIConnectionError):
            raise ProviderError(f"connection failed: {exc}", transient=True, billed=True) from exc
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            transient = status == 429 or status >= 500
            retry_after = _retry_after(exc)
            raise ProviderError(f"{status}: {_message(exc)}", transient=transient,
                                billed=False, retry_after=retry_after) from exc
        return False


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc)


def _retry_after(exc: Any) -> float | None:
    try:
        return float(exc.response.headers.get("retry-after"))
    except (AttributeError, TypeError, ValueError):
        return None


def _is_model(output_type: Any) -> bool:
    return isinstance(output_type, type) and issubclass(output_type, BaseModel)


class OfflineProvider:
    """Deterministic answers with no network, for the embedded demo and docs.

    Text says ``[offline]``; a structured output is built from the schema's defaults and
    simple values; ``classify`` still returns one of the labels.
    """

    model_id = OFFLINE

    def complete(self, messages: list[dict], *, max_tokens: int,
                 output_type: type | None) -> Completion:
        prompt = messages[-1]["content"] if messages else ""
        labels = _labels_in(messages)
        if labels:
            output: Any = _pick(prompt, labels)
            if _is_model(output_type):
                output = output_type(label=output)
        elif _is_model(output_type):
            output = _fill(output_type, prompt)
        else:
            output = f"[offline] {_summary(prompt)}"
        words = sum(len(str(m.get("content", "")).split()) for m in messages)
        return Completion(output=output, prompt_tokens=words + 3 * len(messages) + 3,
                          completion_tokens=min(max_tokens, len(str(output).split()) or 1))

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        vectors = []
        for text in texts:
            digest = hashlib.sha256(text.encode("utf-8")).digest()
            vectors.append([(b - 128) / 128 for b in digest[:16]])
        return vectors, sum(len(t.split()) for t in texts)


LABELS_MARK = "Answer with exactly one of these labels: "


def _labels_in(messages: list[dict]) -> list[str] | None:
    for m in messages:
        content = str(m.get("content", ""))
        if content.startswith(LABELS_MARK):
            return json.loads(content[len(LABELS_MARK):].splitlines()[0])
    return None


def _pick(text: str, labels: list[str]) -> str:
    lowered = text.lower()
    for label in labels:
        if label.lower() in lowered:
            return label
    if "?" in text and any(lb.lower() == "question" for lb in labels):
        return next(lb for lb in labels if lb.lower() == "question")
    index = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % len(labels)
    return labels[index]


def _summary(text: str, words: int = 12) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def _fill(model: type[BaseModel], text: str) -> BaseModel:
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if not info.is_required():
            continue
        annotation = info.annotation
        values[name] = {str: f"[offline] {_summary(text, 6)}", int: 0, float: 0.0,
                        bool: False, list: [], dict: {}}.get(annotation)
    return model.model_validate(values)


def provider_for(model: str) -> OpenAIProvider | OfflineProvider:
    provider, _, model_id = model.partition(":")
    if provider == OFFLINE:
        return OfflineProvider()
    return OpenAIProvider(model_id)
