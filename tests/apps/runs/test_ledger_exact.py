"""The ledger is exact at the limit on both databases (CONTRACTS.md §8): SQLite keeps
decimals as floating point, where 0.1 + 0.2 > 0.3, so this module also runs on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from apps.runs.models import Run, RunBudget
from apps.runs.services.budget import Cost, reserve, settle
from apps.runs.services.runs import run_create
from flowops import UsageLimits
from flowops.exceptions import RunHalted
from tests.apps.runs.conftest import EMBEDDED

pytestmark = EMBEDDED
SQLITE = "sqlite" in settings.DATABASES["default"]["ENGINE"]


def _running(make_flow, usd: str) -> Run:
    flow = make_flow("""
        from flowops import step

        @step
        def work(x: int) -> int:
            return x + 1

        pipeline = work
    """)
    run = run_create(version=flow.version, loaded=flow.loaded, input=1,
                     limits=UsageLimits(total_cost_usd_limit=Decimal(usd)))
    Run.objects.filter(id=run.id).update(status=Run.Status.RUNNING)
    return run


def _reserve(run: Run, usd: str):
    return reserve(run_id=run.id, step_key="work", attempt=1, call="ai.generate",
                   model="openai:gpt-4o-mini", worst=Cost(Decimal(usd), 10))


def test_a_reservation_that_reaches_the_limit_exactly_is_held(make_flow):
    # given $0.10 spent of a $0.30 limit
    run = _running(make_flow, "0.30")
    first = _reserve(run, "0.10")
    settle(reservation=first, actual=Cost(Decimal("0.10"), 10), usage=None, step_id=None)

    # when $0.20 is reserved (exactly up to the limit), then one more micro-dollar
    held = _reserve(run, "0.20")
    with pytest.raises(RunHalted):
        _reserve(run, "0.00000001")

    # then the first is held, the second refused, and the ledger reads exact decimals
    budget = RunBudget.objects.get(run=run)
    assert held.usd == Decimal("0.20")
    assert (budget.spent_usd, budget.reserved_usd) == (Decimal("0.10"), Decimal("0.20"))


@pytest.mark.skipif(SQLITE, reason="this is the SQLite run")
def test_the_ledger_is_exact_on_sqlite_too(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "settings.test_sqlite",
           "FLOWOPS_DB_PATH": str(tmp_path / "ledger.sqlite3")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           __file__], cwd=Path(settings.BASE_DIR), env=env,
                          capture_output=True, text=True, timeout=240)

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
