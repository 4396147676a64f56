"""Structured logging with the run id and step key, and OpenTelemetry spans when installed."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

run_id_var: ContextVar[str | None] = ContextVar("flowops_run_id", default=None)
step_key_var: ContextVar[str | None] = ContextVar("flowops_step_key", default=None)
_tracer: Any = None


class ContextFilter(logging.Filter):
    """Adds ``run_id`` and ``step_key`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = run_id_var.get()
        record.step_key = step_key_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": self.formatTime(record), "level": record.levelname,
                           "logger": record.name, "run_id": getattr(record, "run_id", None),
                           "step_key": getattr(record, "step_key", None),
                           "message": record.getMessage()})


def init_telemetry(*, level: int | str = logging.INFO, json_logs: bool = False) -> None:
    """Log FlowOps events to stderr with run id and step key; trace with OpenTelemetry if present.

    ``init_telemetry()`` once at start-up is enough::

        init_telemetry(level="DEBUG", json_logs=True)
    """
    global _tracer
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s run=%(run_id)s step=%(step_key)s %(message)s"))
    logger = logging.getLogger("flowops")
    logger.handlers = [h for h in logger.handlers if not getattr(h, "_flowops", False)]
    handler._flowops = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        from opentelemetry import trace
    except ImportError:
        return
    _tracer = trace.get_tracer("flowops")


@contextlib.contextmanager
def step_span(run_id: str, key: str, kind: str) -> Iterator[None]:
    """Marks the logs (and a span, when tracing) of one task execution."""
    run_token, key_token = run_id_var.set(run_id), step_key_var.set(key)
    try:
        if _tracer is None:
            yield
        else:
            with _tracer.start_as_current_span(f"flowops.{kind}", attributes={
                    "flowops.run_id": run_id, "flowops.step_key": key}):
                yield
    finally:
        run_id_var.reset(run_token)
        step_key_var.reset(key_token)
