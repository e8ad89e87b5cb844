"""Project-wide test settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Run the tests' tiny models on one intra-op thread.

    On a 2-core machine shared with kernels, Chromium and subprocesses, a second torch thread
    only contends: small sweeps were measured up to 100x slower with two threads under load.
    Results stay deterministic per test either way.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
