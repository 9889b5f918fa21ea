"""Rejections and bad-input errors of the control plane.

A :class:`Rejected` is backpressure: the request was well formed but will not
be served, and ``reason`` says what the caller can do about it.  An
:class:`InvalidRequest` is a caller bug (also a ``ValueError``).
"""
from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Callable

from dataplane.errors import DataplaneError


class Reason(str, enum.Enum):
    """Why a request was not served, phrased as what the caller should do."""

    OVERLOADED = "overloaded"      # too much work ahead right now: back off, retry after ``retry_after``
    DEADLINE = "deadline"          # the deadline cannot be met (or passed while queued): relax it or give up
    RATE_LIMITED = "rate-limited"  # the tenant exceeded its token bucket: retry after ``retry_after``
    CIRCUIT_OPEN = "circuit-open"  # no healthy worker: retry after ``retry_after``


class Rejected(DataplaneError):
    """The request was refused or shed.  ``retry_after`` (seconds) is a hint,
    or None when retrying cannot help.

    ``message`` may be a zero-argument callable: rejections are the common
    case under overload, so the text is only built if someone reads it.
    ``args`` is ``(reason, message, retry_after)``, all the state there is,
    so the data path can build one with :func:`rejection` without running a
    Python ``__init__`` (most of the cost of a rejection here).
    """

    def __init__(self, reason: Reason, message: str | Callable[[], str] = "", retry_after: float | None = None) -> None:
        self.args = (reason, message, retry_after)

    @property
    def reason(self) -> Reason:
        return self.args[0]

    @property
    def retry_after(self) -> float | None:
        return self.args[2]

    def _text(self) -> str:
        reason, m, r = self.args[:3]
        if callable(m):
            m = m()
            self.args = (reason, m, r)
        return m

    def __str__(self) -> str:
        m = self._text()
        reason, r = self.args[0], self.args[2]
        hint = "" if r is None or not math.isfinite(r) else f" (retry after {r * 1e3:.3g} ms)"
        return f"{reason.value}: {m}{hint}" if m else f"{reason.value}{hint}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.args[0]!r}, {self._text()!r}, retry_after={self.args[2]!r})"

    def __reduce__(self):
        # Pickle and copy rebuild from args, which the subclasses' narrower
        # constructors cannot take; the lazy text is built first.
        self._text()
        return (_restore, (type(self), self.args), self.__dict__ or None)


def _restore(cls: type, args: tuple) -> Rejected:
    return BaseException.__new__(cls, *args)


def rejection(reason: Reason, message: str | Callable[[], str] = "", retry_after: float | None = None,
              _new=Rejected.__new__) -> Rejected:
    """``Rejected(reason, message, retry_after)`` for the data path: the
    same object, built by ``BaseException.__new__`` alone."""
    return _new(Rejected, reason, message, retry_after)


class QueueFull(Rejected):
    """A bounded queue under the reject-new policy is full (reason OVERLOADED)."""

    def __init__(self, message: str = "queue full", retry_after: float | None = None) -> None:
        super().__init__(Reason.OVERLOADED, message, retry_after)


class InvalidRequest(DataplaneError, ValueError):
    """Bad input: a weight ≤ 0, a NaN or negative cost, a malformed deadline."""


class UnknownTenant(InvalidRequest, KeyError):
    """A tenant that was never added, under a strict policy."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown tenant"


class DeadlineInPast(Rejected, InvalidRequest):
    """The deadline had already passed when the request was submitted.

    Both a rejection (reason DEADLINE, so generic rejection handling counts it)
    and bad input (so it cannot be mistaken for load shedding)."""

    def __init__(self, message: str) -> None:
        Rejected.__init__(self, Reason.DEADLINE, message, None)


def check_weight(weight: float) -> float:
    """Return ``weight`` as a float, or raise InvalidRequest unless finite and > 0."""
    try:
        w = float(weight)
    except (TypeError, ValueError):
        raise InvalidRequest(f"weight must be a number, got {weight!r}") from None
    if not (w > 0.0 and math.isfinite(w)):
        raise InvalidRequest(f"weight must be finite and > 0, got {weight!r}")
    return w


def check_cost(cost: float) -> float:
    """Return ``cost`` as a float, or raise InvalidRequest unless a finite number ≥ 0."""
    if isinstance(cost, bool) or not isinstance(cost, numbers.Real):
        raise InvalidRequest(f"cost must be a number, got {cost!r}")
    c = float(cost)
    if not (c >= 0.0 and c != math.inf):  # `not >=` also catches NaN
        raise InvalidRequest(f"cost must be finite and >= 0, got {cost!r}")
    return c


def check_positive(name: str, value: float, *, allow_inf: bool = False) -> float:
    """Return ``value`` as a float, or raise InvalidRequest unless > 0 (and finite unless allowed)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a number, got {value!r}") from None
    if not (v > 0.0 and (allow_inf or v != math.inf)):
        raise InvalidRequest(f"{name} must be {'> 0' if allow_inf else 'finite and > 0'}, got {value!r}")
    return v
