"""The simulator's one error type."""
from __future__ import annotations

from dataplane.errors import DataplaneError


class SimConfigError(DataplaneError, ValueError):
    """A simulation parameter is out of range or unknown (also a ``ValueError``)."""
