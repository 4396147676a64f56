"""Per-run usage limits (the seed's ``UsageLimits``)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class UsageLimits(BaseModel):
    """The most a run may spend. A run halts before it would cross either limit."""

    model_config = ConfigDict(frozen=True)

    # The ledger holds 14 digits with 8 decimals, and tokens in a 64-bit integer.
    total_cost_usd_limit: Decimal | None = Field(default=None, ge=0, lt=1_000_000)
    """Spend in US dollars, from model prices."""
    total_tokens_limit: int | None = Field(default=None, ge=0, le=2**63 - 1)
    """Prompt plus completion tokens."""
