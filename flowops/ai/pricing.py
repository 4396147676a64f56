"""Model prices in USD, for the budget governor (CONTRACTS.md §8).

Prices come from the snapshot bundled with the ``genai-prices`` package, read offline: the
package can also fetch newer prices over HTTP (``UpdatePrices``), which FlowOps never
starts, and this module builds its own snapshot from the bundled data so that a fetched
one is never used either. ``FLOWOPS_MODEL_PRICES`` overrides or adds prices for private
and self-hosted models::

    FLOWOPS_MODEL_PRICES='{"openai:my-model": {"input": 0.15, "cached_input": 0.075,
                                               "output": 0.6}}'

What a snapshot price means here:

- the standard processing tier (no flex, priority or batch variant);
- the price in force now, when a model's price changed over time or by time of day;
- for prices tiered by prompt size, the base tier (small requests): a prompt above the
  tier's threshold (e.g. 200K tokens on some models) is billed more than this says;
- tokens only: per-request, web-search and cache-write charges are not included;
- a model whose snapshot entry lacks an input or an output token price has no price
  (``None``), rather than a free one.
"""

from __future__ import annotations

import functools
import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowops._codec import describe_errors
from flowops.exceptions import UserError

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo

PRICES_ENV = "FLOWOPS_MODEL_PRICES"

_MILLION = Decimal(1_000_000)


class ModelPrice(BaseModel):
    """What a model costs, in US dollars per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Decimal = Field(ge=0)
    """Prompt tokens that were not served from the provider's prompt cache."""
    cached_input: Decimal = Field(ge=0)
    """Prompt tokens served from the prompt cache; equal to ``input`` when there is no discount."""
    output: Decimal = Field(ge=0)
    """Completion tokens, reasoning tokens included."""


def price_for(model: str) -> ModelPrice | None:
    """The price of a FlowOps model name, or ``None`` when no price is known.

    ``FLOWOPS_MODEL_PRICES`` wins over the bundled snapshot::

        price_for("openai:gpt-4o-mini")  # ModelPrice(input=0.15, cached_input=0.075, output=0.6)
        price_for("openai:llama3")       # None: refuse it under a USD limit

    Raises ``UserError`` when ``FLOWOPS_MODEL_PRICES`` is malformed.
    """
    override = _overrides(os.environ.get(PRICES_ENV, "")).get(model)
    if override is not None:
        return override
    provider, _, model_id = model.partition(":")
    if not model_id:
        return None
    info = _snapshot_model(provider.lower(), model_id.lower())
    return _from_snapshot(info) if info is not None else None


def cost_usd(price: ModelPrice, *, prompt_tokens: int, completion_tokens: int,
             cached_tokens: int = 0) -> Decimal:
    """What a call cost. ``cached_tokens`` are part of ``prompt_tokens``, as OpenAI reports them.

    Example: 1,000 prompt tokens of which 400 cached and 200 completion tokens on
    gpt-4o-mini cost (600 x 0.15 + 400 x 0.075 + 200 x 0.6) / 1e6 = $0.00024.
    """
    if not 0 <= cached_tokens <= prompt_tokens or completion_tokens < 0:
        raise ValueError(f"bad usage: prompt_tokens={prompt_tokens}, "
                         f"cached_tokens={cached_tokens}, completion_tokens={completion_tokens}")
    total = ((prompt_tokens - cached_tokens) * price.input + cached_tokens * price.cached_input
             + completion_tokens * price.output)
    return total / _MILLION


def worst_case_usd(price: ModelPrice, *, prompt_tokens_bound: int,
                   max_output_tokens: int) -> Decimal:
    """The most a call can cost: every prompt token uncached and the full output cap used.

    Example: worst_case_usd(gpt_4o_mini, prompt_tokens_bound=1050, max_output_tokens=1024)
    is (1050 x 0.15 + 1024 x 0.6) / 1e6 = $0.0007719.
    """
    # The larger of the two input prices: an override may price cached tokens above
    # uncached ones, and the reservation must cover whichever the provider bills.
    per_prompt_token = max(price.input, price.cached_input)
    return (prompt_tokens_bound * per_prompt_token + max_output_tokens * price.output) / _MILLION


# -- FLOWOPS_MODEL_PRICES ------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _overrides(raw: str) -> dict[str, ModelPrice]:
    """``FLOWOPS_MODEL_PRICES`` parsed; cached by its text, so a changed value is re-read."""
    if not raw.strip():
        return {}
    try:
        # parse_float=Decimal keeps 0.15 exact instead of going through a binary float.
        data = json.loads(raw, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise UserError(f"{PRICES_ENV} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{PRICES_ENV} must be a JSON object of model name -> prices")
    return {model: _override(model, prices) for model, prices in data.items()}


class _PriceOverride(BaseModel):
    """One model's entry in ``FLOWOPS_MODEL_PRICES``."""

    model_config = ConfigDict(extra="forbid")

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)
    """Left out (or null): no cached-token discount."""


def _override(model: str, prices: Any) -> ModelPrice:
    if not isinstance(prices, dict):
        raise UserError(f"{PRICES_ENV}[{model!r}] must be an object with input, output "
                        f"and optionally cached_input (USD per million tokens)")
    try:
        entry = _PriceOverride(**prices)
    except ValidationError as exc:
        raise UserError(f"{PRICES_ENV}[{model!r}]: {describe_errors(exc)}") from None
    cached = entry.input if entry.cached_input is None else entry.cached_input
    return ModelPrice(input=entry.input, cached_input=cached, output=entry.output)


# -- the bundled snapshot ----------------------------------------------------------------
@functools.lru_cache(maxsize=1024)
def _snapshot_model(provider: str, model_id: str) -> ModelInfo | None:
    """The snapshot's entry for a model; misses are cached too, the lookup scans regexes."""
    snapshot = _snapshot()
    try:
        _, info = snapshot.find_provider_model(model_id, None, provider, None)
    except LookupError:
        return None
    return info


@functools.cache
def _snapshot():
    # Built from the bundled data, not genai_prices' get_snapshot(), which returns a
    # snapshot fetched over HTTP once anything in the process has started UpdatePrices.
    from genai_prices.data import providers
    from genai_prices.data_snapshot import DataSnapshot

    return DataSnapshot(providers=providers, from_auto_update=False)


def _from_snapshot(info: ModelInfo) -> ModelPrice | None:
    prices = info.get_prices(datetime.now(tz=UTC))
    input_, output = _base(prices.input_mtok), _base(prices.output_mtok)
    if input_ is None or output is None:
        return None
    cached = _base(prices.cache_read_mtok)
    return ModelPrice(input=input_, cached_input=input_ if cached is None else cached,
                      output=output)


def _base(price: Any) -> Decimal | None:
    """A flat price as is; a price tiered by prompt size at its base (smallest) tier."""
    return getattr(price, "base", price)
