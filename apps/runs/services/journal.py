"""The run journal (CONTRACTS.md §7): journaled calls replay their recorded results.

Entries are keyed by (run, scope, seq) and carry the call name and a hash of its
arguments; a replay that makes a different call raises ``NonDeterminismError``. Every
entry is written only while the step's claim (its attempt number) still holds.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import functools
import logging
import os
import signal
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import close_old_connections, transaction
from django.db.models.functions import Now

from apps.runs.models import JournalEntry, StepRun
from apps.runs.services import budget
from apps.runs.services.liveness import current_owner
from flowops._codec import decode, digest, encode
from flowops._runtime import Metered
from flowops.exceptions import NonDeterminismError, RunHalted, RunStop

log = logging.getLogger("flowops.journal")
ZERO = Decimal(0)


class ClaimLost(RunStop):
    """Another attempt took this step over; this one must not write anything more."""


class ActivityError(Exception):
    """A journaled call failed with an exception type that cannot be rebuilt on replay."""

    def __init__(self, error_type: str, message: str):
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type


class DatabaseJournal:
    """The journal of one step attempt (or of a script's ``run``)."""

    def __init__(self, *, run_id: str, scope: str, step_id: int, attempt: int):
        self.run_id = run_id
        self.scope = scope
        self.step_id = step_id
        self.attempt = attempt
        self.seq = 0
        self._loaded: dict[int, JournalEntry] | None = None

    @property
    def _entries(self) -> dict[int, JournalEntry]:
        # Loaded on the first journaled call: most steps make none.
        if self._loaded is None:
            self._loaded = {e.seq: e for e in JournalEntry.objects.filter(
                run_id=self.run_id, scope=self.scope)}
        return self._loaded

    def restart(self) -> None:
        """A retry after an exception: reads and AI calls run afresh, effects are reused."""
        with transaction.atomic():
            self._fence()
            forget_reads(self.run_id, self.scope)
        self._loaded = None
        self.seq = 0

    # -- the Journal protocol ----------------------------------------------------------
    def call(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict, *,
             effect: bool, returns: Any) -> Any:
        seq, args_hash = self._next(name, args, kwargs)
        recorded = orm_call(lambda: self._entries.get(seq))
        if recorded is not None:
            return self._replay(recorded, name, args_hash, returns)
        if effect:
            orm_call(self._write, seq, name, args_hash, effect, JournalEntry.State.INTENT)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            orm_call(self._write, seq, name, args_hash, effect, JournalEntry.State.ERROR,
                error={"type": type(exc).__name__, "message": str(exc)})
            raise
        orm_call(self._write, seq, name, args_hash, effect, JournalEntry.State.DONE,
            result=encode(result, returns))
        if effect:
            fault_point("after_activity", name)
        return result

    async def acall(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict, *,
                    effect: bool, returns: Any) -> Any:
        # The ORM is synchronous: journal I/O runs in a thread beside the event loop.
        seq, args_hash = self._next(name, args, kwargs)
        entries = await _adb(lambda: self._entries)
        recorded = entries.get(seq)
        if recorded is not None:
            return self._replay(recorded, name, args_hash, returns)
        if effect:
            await _adb(self._write, seq, name, args_hash, effect, JournalEntry.State.INTENT)
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            await _adb(self._write, seq, name, args_hash, effect, JournalEntry.State.ERROR,
                       error={"type": type(exc).__name__, "message": str(exc)})
            raise
        await _adb(self._write, seq, name, args_hash, effect, JournalEntry.State.DONE,
                   result=encode(result, returns))
        if effect:
            fault_point("after_activity", name)
        return result

    def transact(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict, *,
                 returns: Any) -> Any:
        """A database effect (``memory.store``): ``fn``'s writes and its journal entry
        commit in one transaction, so after a crash the entry exists exactly when the
        write does, and a resumed run replays it instead of writing again."""
        seq, args_hash = self._next(name, args, kwargs)
        recorded = orm_call(lambda: self._entries.get(seq))
        if recorded is not None:
            return self._replay(recorded, name, args_hash, returns)

        def write() -> Any:
            with transaction.atomic():
                result = fn(*args, **kwargs)
                self._write(seq, name, args_hash, True, JournalEntry.State.DONE,
                            result=encode(result, returns))
            return result

        try:
            result = orm_call(write)
        except ClaimLost:
            raise
        except Exception as exc:  # nothing was written: journal the refusal itself
            orm_call(self._write, seq, name, args_hash, True, JournalEntry.State.ERROR,
                error={"type": type(exc).__name__, "message": str(exc)})
            raise
        fault_point("after_activity", name)
        return result

    def metered(self, name: str, args: tuple, kwargs: dict, *, returns: Any,
                attempts: Callable[[Meter], Metered]) -> Any:
        """A model call (CONTRACTS.md §8): replayed like any journaled call; else
        ``attempts`` makes it, reserving through the meter before each attempt, and its
        usage is settled in the transaction that journals the result."""
        seq, args_hash = self._next(name, args, kwargs)
        recorded = orm_call(lambda: self._entries.get(seq))
        if recorded is not None:
            return self._replay(recorded, name, args_hash, returns)
        done = attempts(Meter(self, name))
        result = encode(done.result, returns)

        def record() -> None:
            with transaction.atomic():
                self._write(seq, name, args_hash, False, JournalEntry.State.DONE, result=result)
                actual = budget.Cost(done.usd or ZERO, done.tokens)
                settled = budget.settle(reservation=done.reservation, actual=actual,
                                        usage=done.usage, step_id=self.step_id)
            if not settled:
                raise RunHalted(f"run {self.run_id} halted: a call in {self.scope} used more "
                                "than its reservation", run_id=self.run_id)

        if done.reservation is not None:
            orm_call(record)
        else:
            orm_call(self._write, seq, name, args_hash, False, JournalEntry.State.DONE,
                     result=result)
        return done.result

    # -- internals -----------------------------------------------------------------------
    def _next(self, name: str, args: tuple, kwargs: dict) -> tuple[int, str]:
        seq = self.seq
        self.seq += 1
        return seq, digest([name, list(args), kwargs])

    def _replay(self, entry: JournalEntry, name: str, args_hash: str, returns: Any) -> Any:
        if entry.call != name or entry.args_hash != args_hash:
            same = "arguments" if entry.call == name else "call"
            raise NonDeterminismError(
                f"replay of step {self.scope!r} diverged at call {entry.seq}: the journal has "
                f"{entry.call}(...) and the code now makes {name}(...) (different {same})",
                run_id=self.run_id)
        if entry.state == JournalEntry.State.DONE:
            return decode(entry.result, returns)
        if entry.state == JournalEntry.State.ERROR:
            raise _rebuild(entry.error or {})
        log.warning("run %s: effect %s at %s/%s has an intent but no result; not repeated",
                    self.run_id, name, self.scope, entry.seq)
        return None

    def _write(self, seq: int, name: str, args_hash: str, effect: bool, state: str, *,
               result: Any = None, error: dict | None = None) -> None:
        with transaction.atomic():
            self._fence()
            entry, _ = JournalEntry.objects.update_or_create(
                run_id=self.run_id, scope=self.scope, seq=seq,
                defaults={"call": name, "args_hash": args_hash, "effect": effect,
                          "state": state, "result": result, "error": error,
                          "attempt": self.attempt})
        self._entries[seq] = entry

    def _fence(self) -> None:
        # Writing the heartbeat under the attempt number both proves the claim still holds
        # and serialises with a takeover (which changes the attempt).
        # The owner too: a claim lost in a database crash repeats the attempt number.
        owner = current_owner()
        held = StepRun.objects.filter(id=self.step_id, attempt=self.attempt,
                                      status=StepRun.Status.RUNNING, owner_host=owner.host,
                                      owner_pid=owner.pid).update(heartbeat_at=Now())
        if not held:
            raise ClaimLost(f"step {self.scope!r} was taken over; attempt {self.attempt} stops",
                            run_id=self.run_id)


class Meter:
    """Reservations for the attempts of one model call, on the run's ledger."""

    def __init__(self, journal: DatabaseJournal, call: str):
        self._journal = journal
        self._call = call

    def reserve(self, *, model: str, usd: Decimal | None, tokens: int) -> Any:
        """Hold a call's worst case; ``usd=None``: the model has no known price."""
        j = self._journal
        return orm_call(budget.reserve, run_id=j.run_id, step_key=j.scope, attempt=j.attempt,
                   call=self._call, model=model, worst=budget.Cost(usd, tokens))

    def release(self, reservation: Any) -> None:
        orm_call(budget.release, reservation=reservation)

    def settle_worst(self, reservation: Any) -> None:
        """The provider may have billed it (a timeout, a dropped connection)."""

        def settle() -> None:
            with transaction.atomic():
                budget.settle(reservation=reservation,
                              actual=budget.Cost(reservation.usd, reservation.tokens),
                              usage={"unknown": True}, step_id=self._journal.step_id)

        orm_call(settle)


def forget_reads(run_id: str, scope: str) -> None:
    """After an exception, the next attempt reads afresh: keep only effects that happened
    (or may have: an intent), drop reads, AI calls and failed effects (CONTRACTS.md §7)."""
    JournalEntry.objects.filter(run_id=run_id, scope=scope).exclude(
        effect=True, state__in=[JournalEntry.State.DONE, JournalEntry.State.INTENT]).delete()


# Django's ORM refuses to run on a thread with a running event loop (an async step), so
# journal I/O from there goes to these threads; each keeps its own connection.
_db_threads = concurrent.futures.ThreadPoolExecutor(max_workers=4,
                                                    thread_name_prefix="flowops-journal")


def orm_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` (which uses the ORM) here, or on a journal thread under an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    return _db_threads.submit(_then_release, fn, *args, **kwargs).result()


async def _adb(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    loop = asyncio.get_running_loop()
    call = functools.partial(_then_release, fn, *args, **kwargs)
    return await loop.run_in_executor(_db_threads, call)


def _then_release(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # Pool threads live on: let Django close their connection by CONN_MAX_AGE as it would
    # at the end of a request, or it stays open for the life of the process.
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


def _rebuild(error: dict) -> Exception:
    kind = getattr(builtins, error.get("type", ""), None)
    message = error.get("message", "")
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(message)
        except Exception:
            pass
    return ActivityError(error.get("type", "Exception"), message)


def fault_point(point: str, name: str) -> None:
    """``FLOWOPS_FAULT=after_activity:slack.reply`` ends the process there (a test hook)."""
    wanted = os.environ.get("FLOWOPS_FAULT", "")
    if f"{point}:{name}" in {w.strip() for w in wanted.split(",") if w.strip()}:
        log.warning("FLOWOPS_FAULT %s:%s: killing process %s", point, name, os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)
