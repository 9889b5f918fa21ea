"""Errors a request of the executor can end with.

They belong to the :class:`~dataplane.errors.DataplaneError` family; a
failed request carries one as its :attr:`Result.error` instead of raising it
in the dispatcher, so one bad request never disturbs the others.
"""
from __future__ import annotations

from dataplane.errors import DataplaneError


class WorkerCrashed(DataplaneError):
    """The worker process running this request died (or no live worker was
    left to run it).  The request may have run partly; it did not finish."""

    def __init__(self, message: str, *, worker: int | None = None, pid: int | None = None,
                 exitcode: int | None = None) -> None:
        super().__init__(message)
        self.worker = worker
        self.pid = pid
        self.exitcode = exitcode


class HandlerError(DataplaneError):
    """The handler raised.  ``type_name`` and ``remote_traceback`` describe
    the exception in the worker; the worker itself kept serving."""

    def __init__(self, message: str, *, type_name: str = "", remote_traceback: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.remote_traceback = remote_traceback


class Cancelled(DataplaneError):
    """The executor was closed without waiting, before this request ran."""
