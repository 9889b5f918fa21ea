import os
import uuid

import pytest

from dataplane.ring import unlink


@pytest.fixture
def ring_name():
    """A unique /dev/shm name, removed after the test."""
    name = f"dptest-{os.getpid()}-{uuid.uuid4().hex[:10]}"
    yield name
    unlink(name)
