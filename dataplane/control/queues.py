"""Bounded FIFO queues and their shedding policies.

Every queue in the control plane is bounded.  What happens when one is full
is its :class:`ShedPolicy`:

``REJECT_NEW``
    The newcomer is refused with :class:`QueueFull` (reason OVERLOADED).  This
    is backpressure: the sender learns at once, and nothing already queued is
    lost.  The default.
``DROP_OLDEST``
    The head (the item that has waited longest, so the likeliest to be stale)
    is evicted and returned to the caller, and the newcomer is queued.  For
    feeds where fresh data supersedes old.
``DROP_EXPIRED``
    Every queued item whose deadline has passed is evicted and returned; if
    that made room the newcomer is queued, otherwise it is refused as under
    REJECT_NEW.  The scan is O(n) but runs only when the queue is full.
"""
from __future__ import annotations

import enum
from collections import deque
from typing import Any

from dataplane.control.errors import InvalidRequest, QueueFull

_NONE: tuple = ()


class ShedPolicy(str, enum.Enum):
    REJECT_NEW = "reject-new"
    DROP_OLDEST = "drop-oldest"
    DROP_EXPIRED = "drop-expired"


def check_policy(policy: ShedPolicy | str) -> ShedPolicy:
    try:
        return ShedPolicy(policy)
    except ValueError:
        raise InvalidRequest(f"unknown shed policy {policy!r}; one of {[p.value for p in ShedPolicy]}") from None


def check_capacity(capacity: int) -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise InvalidRequest(f"queue capacity must be an int >= 1, got {capacity!r}")
    return capacity


class BoundedQueue:
    """A FIFO of at most ``capacity`` items with a :class:`ShedPolicy`.

    Items under DROP_EXPIRED need a ``deadline`` attribute (None: never
    expires).  ``push`` returns the items it evicted (usually ``()``) so the
    caller can tell their senders; it raises :class:`QueueFull` to refuse.
    """

    __slots__ = ("_q", "capacity", "policy")

    def __init__(self, capacity: int = 1024, policy: ShedPolicy | str = ShedPolicy.REJECT_NEW) -> None:
        self._q: deque = deque()
        self.capacity = check_capacity(capacity)
        self.policy = check_policy(policy)

    def push(self, item: Any, now: float = 0.0) -> tuple:
        """Queue ``item``; return what was evicted to make room."""
        q = self._q
        if len(q) < self.capacity:
            q.append(item)
            return _NONE
        return self._push_full(item, now)

    def _push_full(self, item: Any, now: float) -> tuple:
        policy = self.policy
        q = self._q
        if policy is ShedPolicy.DROP_OLDEST:
            old = q.popleft()
            q.append(item)
            return (old,)
        if policy is ShedPolicy.DROP_EXPIRED:
            dropped = self.remove_expired(now)
            if dropped:  # evicting anything made room
                self._q.append(item)
                return tuple(dropped)
            raise QueueFull(f"queue full ({self.capacity}), nothing expired")
        raise QueueFull(f"queue full ({self.capacity})")

    def remove_expired(self, now: float) -> list:
        """Evict and return every item whose deadline is ≤ ``now``, keeping order."""
        q = self._q
        keep, gone = deque(), []
        for it in q:
            d = it.deadline
            (gone if d is not None and d <= now else keep).append(it)
        if gone:
            self._q = keep
        return gone

    def pop(self) -> Any:
        """Remove and return the head; IndexError when empty."""
        return self._q.popleft()

    def peek(self) -> Any:
        """The head without removing it; IndexError when empty."""
        return self._q[0]

    def __len__(self) -> int:
        return len(self._q)

    def __bool__(self) -> bool:
        return bool(self._q)

    def __iter__(self):
        return iter(self._q)

    @property
    def full(self) -> bool:
        return len(self._q) >= self.capacity

    @property
    def free(self) -> int:
        """Room left: a sender can check this instead of being refused."""
        return self.capacity - len(self._q)
