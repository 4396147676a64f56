"""Journaled calls outside a run simply run (CONTRACTS.md §7)."""

import asyncio
import datetime as dt
import uuid as uuid_module

import flowops
from flowops import activity
from flowops._runtime import current_journal


def test_an_activity_outside_a_run_calls_its_function():
    calls = []

    @activity
    def read(x: int) -> int:
        calls.append(x)
        return x + 1

    assert current_journal() is None
    assert read(1) == 2
    assert read(1) == 2
    assert calls == [1, 1]


def test_an_async_effect_outside_a_run_calls_its_function():
    calls = []

    @activity(effect=True, name="mail.send")
    async def send(to: str) -> str:
        calls.append(to)
        return f"sent to {to}"

    assert asyncio.run(send("ann")) == "sent to ann"
    assert calls == ["ann"]
    assert send.__name__ == "send"


def test_now_uuid_and_random_work_outside_a_run():
    before = dt.datetime.now(dt.UTC)

    when, made, number = flowops.now(), flowops.uuid(), flowops.random()

    assert before <= when <= dt.datetime.now(dt.UTC)
    assert when.tzinfo is dt.UTC
    assert isinstance(made, uuid_module.UUID) and made.version == 4
    assert 0 <= number < 1
