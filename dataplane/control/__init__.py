"""The control plane: admission control, fair scheduling, bounded queues and
circuit breakers (and, opt-in, a CoDel queue-delay target and an adaptive
concurrency limit), as plain objects on an injectable clock.

The same objects run in virtual time (:func:`simulate`, a discrete-event
driver) and live (:func:`dataplane.control.live.run_live`, worker
processes).  See docs/control-plane.md.
"""
from __future__ import annotations

from dataplane.control.admission import Account, AdmissionController
from dataplane.control.breaker import BreakerState, CircuitBreaker
from dataplane.control.bucket import TokenBucket
from dataplane.control.codel import CoDel
from dataplane.control.concurrency import AIMDLimit
from dataplane.control.drr import DRRScheduler
from dataplane.control.errors import (
    DeadlineInPast,
    InvalidRequest,
    QueueFull,
    Reason,
    Rejected,
    UnknownTenant,
)
from dataplane.control.estimator import Estimate, ServiceEstimator
from dataplane.control.fifo import FIFOScheduler
from dataplane.control.gateway import Gateway, TenantStats
from dataplane.control.queues import BoundedQueue, ShedPolicy
from dataplane.control.recorder import Recorder, TenantRecord
from dataplane.control.request import Request
from dataplane.control.vtime import simulate
from dataplane.control.wfq import WFQScheduler
from dataplane.control.workload import Arrival, Service, Stream, arrivals

__all__ = [
    "AIMDLimit",
    "Account",
    "AdmissionController",
    "Arrival",
    "BoundedQueue",
    "BreakerState",
    "CircuitBreaker",
    "CoDel",
    "DRRScheduler",
    "DeadlineInPast",
    "Estimate",
    "FIFOScheduler",
    "Gateway",
    "InvalidRequest",
    "QueueFull",
    "Reason",
    "Recorder",
    "Rejected",
    "Request",
    "ServiceEstimator",
    "Service",
    "ShedPolicy",
    "Stream",
    "TenantRecord",
    "TenantStats",
    "TokenBucket",
    "UnknownTenant",
    "WFQScheduler",
    "arrivals",
    "simulate",
]
