"""CoDel: a target on queue delay (Nichols & Jacobson, RFC 8289), adapted
to a request queue.

Every dequeued request's *sojourn* (now − the time it was queued) is
checked at dequeue.  A queue whose sojourn has stayed at or above
``target`` for a whole ``interval`` (i.e. the minimum over the interval is
above target: a standing queue, not a burst) enters the *dropping* state:
the request in hand is shed, and while the state lasts a further one is shed
each time ``now`` reaches ``drop_next``, which the control law moves on by
``interval / sqrt(count)`` per drop, so the shedding rate grows until the
delay comes down.  The first request seen below target (or the queue running
empty) leaves the state.  Re-entering soon after leaving resumes near the
old drop rate (RFC 8289's ``count - lastcount`` rule), which is what lets it
converge on sustained overload.

Adapted to requests:

* the "less than one MTU left" rule becomes "no other request left in the
  queue" (shedding the last request frees nothing);
* the decision is made per request: :meth:`CoDel.should_shed` is called for
  each request taken off the queue and says whether to shed it instead of
  serving it;
* a ``ceiling`` (default 2 × target): while dropping, a request that has
  waited longer than that is shed whatever the control law says.  CoDel's
  control law assumes senders that slow down when they lose a packet (TCP);
  open-loop request senders do not, so each shed removes exactly one
  request, and the law's drop rate (``sqrt(count) / interval`` per second)
  takes tens of seconds to reach the excess of a 2× overload (measured: the
  queue delay stays at the bound of the queues, ~250 ms, either way).  The
  ceiling is the "slough" rule of request-queue CoDels in RPC servers
  (folly's ``Codel``: while overloaded, drop what waited over 2 × target).
  ``ceiling=None`` gives plain RFC 8289.

O(1) per request.
"""
from __future__ import annotations

import math

from dataplane.clock import Clock
from dataplane.control.errors import InvalidRequest, check_positive


class CoDel:
    """The CoDel state machine for one queue.

    ``target``: acceptable standing queue delay (seconds, default 5 ms).
    ``interval``: how long the delay must stay above target before shedding
    starts, and the base of the control law (seconds, default 100 ms; about
    the time a sender needs to react).  ``ceiling``: while dropping, shed
    anything queued longer than this (seconds, >= target; default
    2 × target; None: never, plain RFC 8289).  ``clock`` supplies ``now``
    when the caller does not pass it.
    """

    __slots__ = ("target", "interval", "ceiling", "_clock", "first_above", "drop_next", "count", "lastcount",
                 "dropping", "drops", "law_drops")

    def __init__(self, target: float = 0.005, interval: float = 0.1, *, ceiling: float | None | str = "auto",
                 clock: Clock) -> None:
        self.target = check_positive("codel target", target)
        self.interval = check_positive("codel interval", interval)
        if ceiling == "auto":
            ceiling = 2.0 * self.target
        elif ceiling is None:
            ceiling = math.inf
        else:
            ceiling = check_positive("codel ceiling", ceiling)
            if ceiling < self.target:
                raise InvalidRequest(f"codel ceiling ({ceiling!r}) must be >= its target ({target!r})")
        self.ceiling = ceiling
        if self.target >= self.interval:
            # RFC 8289: the target is a small fraction (5-10%) of the interval;
            # a target at or above it could never be distinguished from a burst.
            raise InvalidRequest(f"codel target ({target!r}) must be smaller than its interval ({interval!r})")
        if clock is None or not callable(getattr(clock, "now", None)):
            raise InvalidRequest(f"codel needs a clock with now(), got {clock!r}")
        self._clock = clock
        self.first_above = 0.0   # when the sojourn will have been above target for an interval (0: it is not above)
        self.drop_next = 0.0     # when the control law allows the next shed
        self.count = 0           # sheds in the current dropping state (the control law's input)
        self.lastcount = 0       # count when the last dropping state began
        self.dropping = False
        self.drops = 0           # sheds in total, for introspection
        self.law_drops = 0       # of which by the control law (the rest by the ceiling)

    def _ok_to_drop(self, sojourn: float, now: float, backlog: int) -> bool:
        # RFC 8289 dodequeue(): has the sojourn been above target for an interval?
        if sojourn < self.target or backlog <= 0:
            self.first_above = 0.0
            return False
        if self.first_above == 0.0:
            self.first_above = now + self.interval
            return False
        return now >= self.first_above

    def should_shed(self, enqueued: float, now: float | None = None, *, backlog: int = 1) -> bool:
        """Called for each request taken off the queue: True to shed it.

        ``enqueued``: when it was queued; ``backlog``: requests still queued
        behind it (0 means this one emptied the queue: never shed)."""
        if now is None:
            now = self._clock.now()
        sojourn = now - enqueued
        ok = self._ok_to_drop(sojourn, now, backlog)
        if self.dropping:
            if not ok:
                self.dropping = False       # delay is back under target: stop
                return False
            if now >= self.drop_next:
                self.count += 1
                self.drops += 1
                self.law_drops += 1
                # Control law: the gap between sheds shrinks as 1/sqrt(count).
                self.drop_next += self.interval / math.sqrt(self.count)
                return True
            if sojourn > self.ceiling:
                # Open-loop senders do not back off: cap the delay directly.
                # Not counted in `count`, which paces the control law only.
                self.drops += 1
                return True
            return False
        if ok:
            # A full interval above target: start dropping, with this request.
            self.dropping = True
            delta = self.count - self.lastcount
            # Came back soon after leaving: resume near the old rate rather
            # than at 1, or a sustained overload is never caught up with.
            self.count = delta if (delta > 1 and now - self.drop_next < 16 * self.interval) else 1
            self.lastcount = self.count
            self.drop_next = now + self.interval / math.sqrt(self.count)
            self.drops += 1
            self.law_drops += 1
            return True
        return False

    def empty(self) -> None:
        """The queue ran empty: the delay is not standing (RFC: dequeue of nothing)."""
        self.first_above = 0.0
        self.dropping = False

    def __repr__(self) -> str:
        return (f"CoDel(target={self.target!r}, interval={self.interval!r}, ceiling={self.ceiling!r}, "
                f"dropping={self.dropping}, "
                f"count={self.count}, drops={self.drops})")
