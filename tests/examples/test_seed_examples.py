"""The seeds' examples run as written (CONTRACTS: every seed example runs on FlowOps)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.fakes.fixtures import fake_openai  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def _run_example(name: str, cwd: Path, env: dict[str, str], *args: str):
    script = cwd / name
    shutil.copy(ROOT / "examples" / name, script)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    full_env.pop("DJANGO_SETTINGS_MODULE", None)  # the example sets up the embedded default
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def test_hello_prints_hello_via_the_cli(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "flowops.cli", "run", str(ROOT / "examples" / "hello.py"),
         "--input", "FlowOps"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "settings.local",
             "FLOWOPS_DB_PATH": str(tmp_path / "db.sqlite3")},
        capture_output=True, text=True, timeout=120)

    assert (done.returncode, done.stdout) == (0, "Hello, FlowOps!\n")


def test_financial_analyst_runs_as_written(tmp_path, fake_openai):  # noqa: F811
    env = {"OPENAI_API_KEY": "test", "OPENAI_BASE_URL": fake_openai.base_url}

    done = _run_example("financial_analyst.py", tmp_path, env)

    assert done.returncode == 0, done.stderr
    assert "🎉  Done!" in done.stdout
    assert (tmp_path / "reports.db").exists()
    assert fake_openai.stats().requests_total == 4  # three summaries and the report
    # a second run with the same run_id returns the stored result and pays nothing again
    again = _run_example("financial_analyst.py", tmp_path, env)
    assert "🎉  Done!" in again.stdout
    assert fake_openai.stats().requests_total == 4


def test_financial_analyst_halts_before_crossing_its_cap(tmp_path, fake_openai):  # noqa: F811
    # given prices under which the final report's worst case would cross $0.15
    env = {"OPENAI_API_KEY": "test", "OPENAI_BASE_URL": fake_openai.base_url,
           "FLOWOPS_MODEL_PRICES": '{"openai:gpt-4o": {"input": 2.5, "output": 1000}}'}

    done = _run_example("financial_analyst.py", tmp_path, env)

    assert done.returncode == 0, done.stderr
    assert "⚠️  Halted: run q3-analysis-2025 halted: the next call in FinalReport" in done.stdout
    assert "limit $0.150000" in done.stdout
    assert fake_openai.stats().requests_total == 3  # the report was never sent
