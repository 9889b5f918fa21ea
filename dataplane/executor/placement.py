"""Where the dispatcher puts a request: the per-core queue of a policy.

``partitioned`` and ``steal`` hash the flow onto a live queue (like RSS);
``central`` puts everything on one queue that every worker steals from;
``jbsq`` (join-bounded-shortest-queue) keeps at most ``depth`` requests per
worker (running one included) and holds the rest at the dispatcher.
"""
from __future__ import annotations

from dataclasses import dataclass

POLICIES = ("steal", "partitioned", "central", "jbsq")
_GOLDEN = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1


def flow_hash(flow: int) -> int:
    """A 32-bit mix of ``flow`` (Fibonacci hashing): neighbouring flows land
    on unrelated queues, as with a NIC's RSS hash."""
    return ((flow * _GOLDEN) & _M64) >> 32


@dataclass(frozen=True)
class Policy:
    name: str
    steal: bool
    jbsq_depth: int

    @classmethod
    def parse(cls, name: str, jbsq_depth: int, steal: bool | None) -> Policy:
        if name not in POLICIES:
            raise ValueError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)}")
        if not isinstance(jbsq_depth, int) or isinstance(jbsq_depth, bool) or jbsq_depth < 1:
            raise ValueError(f"jbsq_depth must be an int >= 1, not {jbsq_depth!r}")
        default = name in ("steal", "central")
        if steal is None:
            steal = default
        elif name == "central" and not steal:
            raise ValueError("policy 'central' is one queue every worker steals from: steal=False makes no sense")
        elif name == "steal" and not steal:
            raise ValueError("policy 'steal' with steal=False is 'partitioned'")
        return cls(name, bool(steal), jbsq_depth)


def choose_queue(policy: Policy, live: list[int], key: int, inflight: list[int]) -> int:
    """The queue for a request with hash ``key`` among the ``live`` queues;
    -1 (JBSQ only) when every live queue is at its bound."""
    if policy.name == "central":
        return live[0]
    if policy.name == "jbsq":
        best = min(live, key=inflight.__getitem__)
        return best if inflight[best] < policy.jbsq_depth else -1
    return live[flow_hash(key) % len(live)]
