"""The AI layer: model calls that are journaled and budgeted (CONTRACTS.md §7, §8).

Inside a run each call is a journaled activity: a replay returns the recorded answer
and pays nothing again. Before each attempt the call's worst case (prompt bound plus the
output cap) is reserved on the run's ledger; a reservation that would cross the run's
limit halts the run instead of sending. Outside a run the calls are plain calls.

::

    intent = ai.classify(text, labels=["question", "feedback", "complaint"])
    summary = ai.generate("Summarise: ...", max_tokens=200)
    order = ai.extract(email_text, Order)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, create_model

from flowops._runtime import Metered, current_journal
from flowops.ai._providers import (
    DEFAULT_MAX_TOKENS,
    LABELS_MARK,
    OFFLINE,
    ProviderError,
    provider_for,
    resolve,
)
from flowops.ai.pricing import cost_usd, price_for, worst_case_usd
from flowops.ai.tokens import prompt_bound
from flowops.exceptions import RunStop

__all__ = ["AIError", "Agent", "agenerate", "aclassify", "aembed", "aextract", "classify",
           "embed", "extract", "generate", "make_agent", "make_agent_async"]


class AIError(RunStop):
    """A model call failed for good (a 4xx, or transient errors past the retries)."""


def generate(prompt: str, *, system: str | None = None, model: str | None = None,
             max_tokens: int | None = None, output_type: Any = str) -> Any:
    """Ask a model; returns text, or a validated ``output_type`` (a pydantic model)."""
    messages = _messages(prompt, system)
    return _call("ai.generate", messages, model=model, max_tokens=max_tokens,
                 output_type=output_type)


def classify(text: str, labels: list[str], *, model: str | None = None) -> str:
    """One of ``labels`` for ``text``."""
    if not labels or not all(isinstance(lb, str) and lb for lb in labels):
        raise ValueError("classify needs a non-empty list of label strings")
    choice = create_model("Classification", label=(Literal[tuple(labels)], ...))
    system = (f"{LABELS_MARK}{json.dumps(labels)}\n"
              "Reply with the label that fits the user's text best.")
    answer = _call("ai.classify", _messages(text, system), model=model, max_tokens=32,
                   output_type=choice)
    return answer.label


def extract(text: str, schema: type[BaseModel], *, model: str | None = None,
            max_tokens: int | None = None) -> BaseModel:
    """A validated ``schema`` object with the facts found in ``text``."""
    system = (f"Extract the fields of {schema.__name__} from the user's text. "
              "Leave out nothing the text states; invent nothing it does not.")
    return _call("ai.extract", _messages(text, system), model=model, max_tokens=max_tokens,
                 output_type=schema)


def embed(texts: list[str], *, model: str | None = None) -> list[list[float]]:
    """One vector per text."""
    name = resolve(model or os.environ.get("FLOWOPS_AI_EMBED_MODEL") or (
        "openai:text-embedding-3-small" if os.environ.get("OPENAI_API_KEY") else OFFLINE))
    messages = [{"role": "user", "content": t} for t in texts]

    def attempts(meter: Any) -> Metered:
        return _with_retries(meter, name, messages, 0, lambda p: _embedding(p, texts))

    return _journaled("ai.embed", (name, texts), list[list[float]], attempts)


async def agenerate(*args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(generate, *args, **kwargs)


async def aclassify(*args: Any, **kwargs: Any) -> str:
    return await asyncio.to_thread(classify, *args, **kwargs)


async def aextract(*args: Any, **kwargs: Any) -> BaseModel:
    return await asyncio.to_thread(extract, *args, **kwargs)


async def aembed(*args: Any, **kwargs: Any) -> list[list[float]]:
    return await asyncio.to_thread(embed, *args, **kwargs)


class Agent:
    """A model with a system prompt and an output type, usable as a step::

        summariser = make_agent_async(model="openai:gpt-4o-mini",
                                      system_prompt="Be concise.", output_type=str)
        pipeline = fetch >> Step.model_validate({"name": "Summarise", "agent": summariser})
    """

    input_type: Any = Any

    def __init__(self, *, model: str | None = None, system_prompt: str = "",
                 output_type: Any = str, max_tokens: int | None = None):
        self.model = model
        self.system_prompt = system_prompt
        self.output_type = output_type
        self.max_tokens = max_tokens

    def run(self, data: Any) -> Any:
        return generate(_as_prompt(data), system=self.system_prompt or None, model=self.model,
                        max_tokens=self.max_tokens, output_type=self.output_type)


class AsyncAgent(Agent):
    async def run(self, data: Any) -> Any:  # type: ignore[override]
        return await asyncio.to_thread(Agent.run, self, data)


def make_agent(model: str | None = None, system_prompt: str = "", output_type: Any = str,
               max_tokens: int | None = None) -> Agent:
    return Agent(model=model, system_prompt=system_prompt, output_type=output_type,
                 max_tokens=max_tokens)


def make_agent_async(model: str | None = None, system_prompt: str = "",
                     output_type: Any = str, max_tokens: int | None = None) -> AsyncAgent:
    return AsyncAgent(model=model, system_prompt=system_prompt, output_type=output_type,
                      max_tokens=max_tokens)


# -- internals -----------------------------------------------------------------------------
def _messages(prompt: str, system: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": str(prompt)}]


def _as_prompt(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, BaseModel):
        return data.model_dump_json()
    return json.dumps(data, default=str)


def _cap(max_tokens: int | None) -> int:
    return max_tokens or int(os.environ.get("FLOWOPS_AI_DEFAULT_MAX_TOKENS", DEFAULT_MAX_TOKENS))


def _call(name: str, messages: list[dict], *, model: str | None, max_tokens: int | None,
          output_type: Any) -> Any:
    resolved = resolve(model)
    cap = _cap(max_tokens)
    schema = output_type.model_json_schema() if _is_model(output_type) else None

    def attempts(meter: Any) -> Metered:
        return _with_retries(meter, resolved, messages, cap, lambda p: p.complete(
            messages, max_tokens=cap, output_type=output_type if schema else None),
            schema=schema)

    args = (resolved, messages, cap, schema)
    return _journaled(name, args, output_type, attempts)


def _journaled(name: str, args: tuple, returns: Any, attempts: Any) -> Any:
    journal = current_journal()
    if journal is None:
        return attempts(None).result
    return journal.metered(name, args, {}, returns=returns, attempts=attempts)


def _with_retries(meter: Any, model: str, messages: list[dict], cap: int, send: Any, *,
                  schema: dict | None = None) -> Metered:
    """Send with FlowOps' retry policy; every attempt reserves its own worst case."""
    provider = provider_for(model)
    price = None if model == OFFLINE else price_for(model)
    bound = prompt_bound(model, messages, schema=schema)
    worst_usd = Decimal(0) if model == OFFLINE else (
        worst_case_usd(price, prompt_tokens_bound=bound, max_output_tokens=cap)
        if price is not None else None)
    retries = int(os.environ.get("FLOWOPS_AI_MAX_RETRIES", "3"))
    for attempt in range(retries + 1):
        held = meter.reserve(model=model, usd=worst_usd, tokens=bound + cap) if meter else None
        try:
            done = send(provider)
        except ProviderError as exc:
            if meter is not None:
                (meter.settle_worst if exc.billed else meter.release)(held)
            if not exc.transient or attempt >= retries:
                raise AIError(f"{model}: {exc}") from None
            time.sleep(exc.retry_after or _backoff(attempt))
            continue
        return _metered(done, held, price, model)
    raise AssertionError("unreachable")


def _metered(done: Any, held: Any, price: Any, model: str) -> Metered:
    if isinstance(done, tuple):  # embeddings: (vectors, prompt tokens)
        vectors, tokens = done
        usd = cost_usd(price, prompt_tokens=tokens, completion_tokens=0) if price else None
        return Metered(result=vectors, reservation=held, usd=usd, tokens=tokens,
                       usage={"model": model, "prompt": tokens, "completion": 0, "cached": 0})
    usd = None
    if price is not None:
        usd = cost_usd(price, prompt_tokens=done.prompt_tokens,
                       completion_tokens=done.completion_tokens, cached_tokens=done.cached_tokens)
    elif model == OFFLINE:
        usd = Decimal(0)
    usage = {"model": model, "prompt": done.prompt_tokens, "completion": done.completion_tokens,
             "cached": done.cached_tokens, "flagged": done.flagged}
    return Metered(result=done.output, reservation=held, usd=usd,
                   tokens=done.prompt_tokens + done.completion_tokens, usage=usage)


def _embedding(provider: Any, texts: list[str]) -> tuple[list[list[float]], int]:
    return provider.embed(texts)


def _backoff(attempt: int) -> float:
    base = float(os.environ.get("FLOWOPS_AI_BACKOFF_S", "0.5"))
    return base * (2 ** attempt) * random.uniform(0.5, 1.5)


def _is_model(output_type: Any) -> bool:
    return isinstance(output_type, type) and issubclass(output_type, BaseModel)
