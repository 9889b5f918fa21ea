"""Per-core executor with ZygOS-style work stealing.

:class:`Executor` runs a Python handler in N pinned worker processes fed by
per-core queues in shared memory (``native/steal.c``); idle workers steal
from busy ones.  :class:`StealQueues` is the queue segment itself.
"""
from __future__ import annotations

from dataplane.executor.errors import Cancelled, HandlerError, WorkerCrashed
from dataplane.executor.executor import Counters, Executor, Result
from dataplane.executor.placement import POLICIES
from dataplane.executor.queues import StealQueues

__all__ = ["Cancelled", "Counters", "Executor", "HandlerError", "POLICIES", "Result", "StealQueues", "WorkerCrashed"]
