"""What a step is running in, and the journaled calls a step may make (CONTRACTS.md §7).

Inside a run, ``@activity`` functions and ``flowops.now/uuid/random`` go through the
run's journal: on replay they return what they returned the first time. Outside a run
(a unit test calling a step function directly) they simply run.
"""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import random as _random
import uuid as _uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol


class Journal(Protocol):
    def call(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict, *,
             effect: bool, returns: Any) -> Any: ...

    async def acall(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict, *,
                    effect: bool, returns: Any) -> Any: ...

    def metered(self, name: str, args: tuple, kwargs: dict, *, returns: Any,
                attempts: Callable[[Any], Metered]) -> Any: ...

    def transact(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict, *,
                 returns: Any) -> Any:
        """A database effect committed in the same transaction as its journal entry."""
        ...


@dataclass
class Metered:
    """One successful model call, handed to the journal to record and settle.

    ``usd`` is ``None`` when the model has no known price (token limits still apply).
    """

    result: Any
    reservation: Any
    usd: Decimal | None
    tokens: int
    usage: dict[str, Any]


_current: ContextVar[Journal | None] = ContextVar("flowops_journal", default=None)


def current_journal() -> Journal | None:
    return _current.get()


def activity(fn: Callable[..., Any] | None = None, *, name: str | None = None,
             effect: bool = False) -> Any:
    """Journal a function's calls so a replayed run gets the recorded result back.

    ``effect=True`` marks a side effect (an email, a payment): it is reused even when the
    step is retried after an exception, and never repeated when its outcome is unknown::

        @activity(effect=True)
        def send_invoice(order_id: int) -> str: ...
    """

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        # The qualified name alone: the module's name differs between the script run as
        # __main__ and the same source loaded by a worker, and the journal must match both.
        call_name = name or func.__qualname__
        returns = _return_annotation(func)
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                journal = _current.get()
                if journal is None:
                    return await func(*args, **kwargs)
                return await journal.acall(call_name, func, args, kwargs, effect=effect,
                                           returns=returns)
            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            journal = _current.get()
            if journal is None:
                return func(*args, **kwargs)
            return journal.call(call_name, func, args, kwargs, effect=effect, returns=returns)
        return wrapper

    return wrap(fn) if fn is not None else wrap


def _return_annotation(func: Callable[..., Any]) -> Any:
    try:
        return inspect.signature(func, eval_str=True).return_annotation
    except Exception:  # unresolvable annotation: decode as plain JSON
        return inspect.Signature.empty


@activity(name="flowops.now")
def now() -> _dt.datetime:
    """The current UTC time, journaled: a replay sees the same instant."""
    return _dt.datetime.now(_dt.UTC)


@activity(name="flowops.uuid")
def uuid() -> _uuid.UUID:
    """A random UUID4, journaled."""
    return _uuid.uuid4()


@activity(name="flowops.random")
def random() -> float:
    """A random float in [0, 1), journaled."""
    return _random.random()
