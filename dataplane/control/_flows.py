"""Per-tenant state shared by the fair schedulers."""
from __future__ import annotations

from collections.abc import Hashable

from dataplane.control.queues import BoundedQueue, ShedPolicy


class Flow(BoundedQueue):
    """One tenant's bounded queue plus its scheduling state."""

    __slots__ = ("tenant", "index", "weight", "quantum", "deficit", "active", "finish")

    def __init__(self, tenant: Hashable, index: int, weight: float, quantum: float, capacity: int, policy: ShedPolicy | str) -> None:
        super().__init__(capacity, policy)
        self.tenant = tenant
        self.index = index          # registration order: WFQ's tie-break
        self.weight = weight
        self.quantum = quantum      # DRR: credit per turn = base quantum * weight
        self.deficit = 0.0          # DRR deficit counter
        self.active = False         # DRR: in the active list / WFQ: in the heap
        self.finish = 0.0           # WFQ: virtual finish tag of the last tagged head
