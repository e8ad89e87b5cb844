"""Fixtures for the widget tests.

Outside a kernel every widget gets a dummy comm, so these tests build real widgets and feed them
the exact messages the browser sends (:mod:`.frontend`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .scripted import Setup


@pytest.fixture
def setup() -> Iterator[Setup]:
    """A seeded model, data and optimizer; every widget made from it is closed afterwards."""
    made = Setup()
    yield made
    made.close()
