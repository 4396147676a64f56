"""``manage.py runflow`` in child processes with the embedded SQLite settings (CONTRACTS.md §2).

Every case runs the real command the way a user does, against one SQLite file migrated
once for this module. Exit codes: 0 succeeded, 1 failed, 2 usage or bad script, 4 paused.

A child process costs about a second (Django setup), so the module starts every case at
once, a few at a time, and each test reads its own case's outcome. A case is a sequence
of invocations run in order (for ``--run-id``); cases run side by side, which also has
several processes share the SQLite file as CONTRACTS.md §5 promises they can.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
PARALLEL = 3


@dataclass
class Done:
    code: int
    out: str
    err: str

    @property
    def document(self) -> dict:
        return json.loads(self.out)


DOUBLE = '''
from pathlib import Path

from flowops import step

LOG = Path(__file__).with_suffix(".log")


@step
def parse(text: str) -> int:
    with LOG.open("a") as f:
        f.write("parse\\n")
    return int(text)


@step
def double(x: int) -> int:
    return x * 2


pipeline = parse >> double
'''

FAILING = '''
from flowops import step

@step
def boom(x: int) -> int:
    raise RuntimeError(f"cannot handle {x}")

pipeline = boom
'''

PAUSING = '''
from flowops import Step, step

@step
def draft(x: str) -> str:
    return x

pipeline = draft >> Step.human_in_the_loop("review", message_for_user="Check it")
'''

SYNTAX_ERROR = '''
from flowops import step

def broken(:
    pass
'''

LOAD_ERROR = '''
from flowops import step

value = 1 / 0
'''

NO_PIPELINE = '''
from flowops import step

@step
def lonely(x: str) -> str:
    return x
'''

HALF = '''
from flowops import step

@step
def half(x: int) -> int:
    return x // 2

pipeline = half
'''

FAILS_ONCE = '''
from pathlib import Path

from flowops import step

FLAG = Path(__file__).with_suffix(".flag")
LOG = Path(__file__).with_suffix(".log")

@step
def first(x: int) -> int:
    with LOG.open("a") as f:
        f.write("first\\n")
    return x + 1

@step
def flaky(x: int) -> int:
    with LOG.open("a") as f:
        f.write("flaky\\n")
    if not FLAG.exists():
        FLAG.write_text("once")
        raise RuntimeError("transient")
    return x * 10

pipeline = first >> flaky
'''

# Every combinator on SQLite: map items of every JSON type are read one by one.
COMBINATORS = '''
from flowops import Step, step


@step
def items(text: str) -> list:
    return [{"w": text}, "x", 3, 1.5, None, True, [1, 2]]


@step
def show(item) -> str:
    return repr(item)


@step
def count(shown: list) -> int:
    return len(shown)


@step
def inc(x: int) -> int:
    return x + 1


@step
def first(both: dict) -> int:
    return both["a"]


pipeline = (items >> Step.map_over("each", show) >> count
            >> Step.parallel("fan", {"a": inc, "b": inc}) >> first >> Step.branch_on(
                "pick", lambda out, ctx: "big" if out > 5 else "small",
                {"big": inc, "small": inc >> inc})
            >> Step.loop_until("grow", inc, lambda out, ctx: out >= 12))
'''

# case: (script source, other script source or None, invocations). In the arguments,
# {script} and {other} are the case's script paths and {run_id} is "run-<case>".
CASES = {
    "hello": (None, None, [["examples/hello.py", "--input", "FlowOps"]]),
    "plain": (DOUBLE, None, [["{script}", "--input", "56"]]),
    "combinators": (COMBINATORS, None, [["{script}", "--input", "hi", "--json"]]),
    "json": (DOUBLE, None, [["{script}", "--input", "56", "--json"]]),
    "failing": (FAILING, None, [["{script}", "--input-json", "3", "--json"]]),
    "paused": (PAUSING, None, [["{script}", "--input", "text"]]),
    "syntax_error": (SYNTAX_ERROR, None, [["{script}", "--input", "x"]]),
    "load_error": (LOAD_ERROR, None, [["{script}", "--input", "x"]]),
    "no_pipeline": (NO_PIPELINE, None, [["{script}", "--input", "x"]]),
    "wrong_type": (HALF, None, [["{script}", "--input", "abc"]]),
    "bad_input_json": (DOUBLE, None, [["{script}", "--input-json", "{nope"]]),
    "both_inputs": (DOUBLE, None, [["{script}", "--input", "1", "--input-json", "1"]]),
    "no_wait": (DOUBLE, None, [["{script}", "--input", "1", "--no-wait"]]),
    "succeeded_again": (DOUBLE, None, [["{script}", "--input", "21", "--run-id", "{run_id}"],
                                       ["{script}", "--run-id", "{run_id}", "--json"]]),
    "resume_failed": (FAILS_ONCE, None, [["{script}", "--input-json", "1", "--json"],
                                         ["{script}", "--run-id", "<from json>", "--json"]]),
    "new_run_id_fails": (FAILS_ONCE, None, [["{script}", "--input-json", "1",
                                             "--run-id", "{run_id}"]]),
    "other_script": (DOUBLE, DOUBLE.replace("x * 2", "x * 3"),
                     [["{script}", "--input", "1", "--run-id", "{run_id}"],
                      ["{other}", "--run-id", "{run_id}"]]),
}


def _env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLOWOPS_", "DJANGO_", "DATABASE_URL"))}
    env.update({"DJANGO_SETTINGS_MODULE": "settings.local", "FLOWOPS_DB_PATH": str(db),
                "FLOWOPS_DRIVER": "embedded"})
    return env


def _manage(env: dict[str, str], *args: str) -> Done:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    return Done(done.returncode, done.stdout, done.stderr)


def _run_case(env: dict[str, str], where: Path, name: str) -> list[Done]:
    source, other_source, invocations = CASES[name]
    paths = {"script": where / f"{name}.py", "other": where / f"{name}_other.py"}
    for key, text in (("script", source), ("other", other_source)):
        if text is not None:
            paths[key].write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    results: list[Done] = []
    for args in invocations:
        if "<from json>" in args:
            run_id = results[-1].document["run_id"]
            args = [run_id if a == "<from json>" else a for a in args]
        args = [a.replace("{script}", str(paths["script"])).replace("{other}", str(paths["other"]))
                .replace("{run_id}", f"run-{name}") for a in args]
        results.append(_manage(env, "runflow", *args))
    return results


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Migrate a fresh SQLite file, then run every case; ``cli[name]`` lists its outcomes."""
    where = tmp_path_factory.mktemp("runflow")
    env = _env(where / "db.sqlite3")
    migrated = _manage(env, "migrate", "--noinput", "-v0")
    assert migrated.code == 0, migrated.err
    with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = {name: pool.submit(_run_case, env, where, name) for name in CASES}
        outcomes = {name: future.result() for name, future in futures.items()}
    outcomes["_dir"] = where
    return outcomes


def calls(cli, name: str) -> list[str]:
    log = cli["_dir"] / f"{name}.log"
    return log.read_text().split() if log.exists() else []


# -- success -----------------------------------------------------------------------------
def test_hello_example_greets(cli):
    [done] = cli["hello"]

    assert (done.code, done.out) == (0, "Hello, FlowOps!\n")


def test_every_combinator_runs_on_sqlite(cli):
    [done] = cli["combinators"]

    assert done.code == 0, done.err
    steps = {s["key"]: s for s in done.document["steps"]}
    assert steps["each"]["output"] == ["{'w': 'hi'}", "'x'", "3", "1.5", "None", "True",
                                       "[1, 2]"]
    assert steps["fan"]["output"] == {"a": 8, "b": 8}
    assert steps["pick@choice"]["output"] == "big"
    assert done.document["output"] == 12
    assert "grow[2]/inc" in steps


def test_a_succeeding_run_prints_its_output_and_exits_0(cli):
    [done] = cli["plain"]

    assert (done.code, done.out) == (0, "112\n")
    assert calls(cli, "plain") == ["parse"]


def test_json_prints_exactly_one_document_with_the_raw_output(cli):
    [done] = cli["json"]

    assert done.code == 0
    assert done.out.count("\n") == 1 and done.out.endswith("}\n")
    doc = done.document
    assert set(doc) == {"run_id", "status", "output", "error", "spend", "steps"}
    assert (doc["status"], doc["output"], doc["error"]) == ("succeeded", 112, None)
    assert doc["spend"] == {"usd": 0.0, "tokens": 0, "limit_usd": None, "limit_tokens": None}
    assert [(s["key"], s["name"], s["kind"], s["status"], s["attempts"], s["output"],
             s["cost_usd"], s["tokens"], s["cache_hit"]) for s in doc["steps"]] == [
        ("parse", "parse", "step", "succeeded", 1, 56, 0.0, 0, False),
        ("double", "double", "step", "succeeded", 1, 112, 0.0, 0, False)]
    assert all(isinstance(s["duration_ms"], float) for s in doc["steps"])


# -- failed and paused -------------------------------------------------------------------
def test_a_failing_step_exits_1_with_the_error_in_the_document(cli):
    [done] = cli["failing"]

    assert done.code == 1
    assert done.out.count("\n") == 1  # the step's traceback went to stderr
    doc = done.document
    assert (doc["status"], doc["output"]) == ("failed", None)
    assert doc["error"] == {"step_key": "boom", "type": "RuntimeError",
                            "message": "cannot handle 3"}
    assert [(s["key"], s["status"], s["attempts"]) for s in doc["steps"]] == [
        ("boom", "failed", 1)]


def test_a_paused_run_exits_4_and_says_how_to_approve(cli):
    [done] = cli["paused"]

    assert done.code == 4
    assert done.out == ""
    assert "paused at review: Check it" in done.err
    assert "manage.py approve" in done.err


# -- bad scripts and usage ---------------------------------------------------------------
def test_a_syntax_error_exits_2_naming_file_and_line(cli):
    [done] = cli["syntax_error"]

    assert done.code == 2
    assert f"{cli['_dir'] / 'syntax_error.py'}:3: syntax error" in done.err
    assert done.out == ""


def test_an_error_while_loading_exits_2_naming_file_and_line(cli):
    [done] = cli["load_error"]

    assert done.code == 2
    assert f"{cli['_dir'] / 'load_error.py'}:3: ZeroDivisionError: division by zero" in done.err


def test_a_script_without_pipeline_exits_2(cli):
    [done] = cli["no_pipeline"]

    assert done.code == 2
    assert (f"{cli['_dir'] / 'no_pipeline.py'}: no module-level `pipeline` (a Step or "
            "Pipeline) nor a `def run(context)` to run") in done.err


def test_input_of_the_wrong_type_exits_2_naming_the_expected_type(cli):
    [done] = cli["wrong_type"]

    assert done.code == 2
    assert (f"{cli['_dir'] / 'wrong_type.py'}: input does not fit int: input: Input "
            "should be a valid integer") in done.err
    assert done.out == ""


def test_bad_input_json_exits_2(cli):
    [done] = cli["bad_input_json"]

    assert done.code == 2
    assert "--input-json: not valid JSON" in done.err
    assert calls(cli, "bad_input_json") == []


def test_input_and_input_json_together_exit_2(cli):
    [done] = cli["both_inputs"]

    assert done.code == 2
    assert "argument --input-json: not allowed with argument --input" in done.err
    assert calls(cli, "both_inputs") == []


def test_no_wait_in_embedded_mode_exits_2_and_points_to_serve(cli):
    [done] = cli["no_wait"]

    assert done.code == 2
    assert "start `python manage.py serve`" in done.err
    assert calls(cli, "no_wait") == []


# -- --run-id ----------------------------------------------------------------------------
def test_run_id_of_a_succeeded_run_prints_its_result_and_runs_nothing(cli):
    first, again = cli["succeeded_again"]

    assert (first.code, first.out) == (0, "42\n")
    assert again.code == 0
    assert (again.document["run_id"], again.document["status"], again.document["output"]) == (
        "run-succeeded_again", "succeeded", 42)
    assert calls(cli, "succeeded_again") == ["parse"]


def test_run_id_of_a_failed_run_resumes_it(cli):
    failed, resumed = cli["resume_failed"]

    assert (failed.code, failed.document["error"]["message"]) == (1, "transient")
    assert resumed.code == 0
    assert resumed.document["run_id"] == failed.document["run_id"]
    assert (resumed.document["status"], resumed.document["output"]) == ("succeeded", 20)
    assert calls(cli, "resume_failed") == ["first", "flaky", "flaky"]


def test_a_new_run_given_a_run_id_fails_without_a_hidden_retry(cli):
    [done] = cli["new_run_id_fails"]

    assert calls(cli, "new_run_id_fails") == ["first", "flaky"]
    assert done.code == 1


def test_run_id_of_a_run_of_another_script_exits_2_naming_both(cli):
    first, other = cli["other_script"]

    assert first.code == 0
    assert other.code == 2
    assert str(cli["_dir"] / "other_script.py") in other.err
    assert str(cli["_dir"] / "other_script_other.py") in other.err
    assert calls(cli, "other_script_other") == []
