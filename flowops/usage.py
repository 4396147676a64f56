"""Per-run usage limits (the seed's ``UsageLimits``)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class UsageLimits(BaseModel):
    """The most a run may spend. A run halts before it would cross either limit."""

    model_config = ConfigDict(frozen=True)

    total_cost_usd_limit: Decimal | None = Field(default=None, ge=0)
    """Spend in US dollars, from model prices."""
    total_tokens_limit: int | None = Field(default=None, ge=0)
    """Prompt plus completion tokens."""
