from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def _metanet_one_thread() -> Iterator[None]:
    """Tiny networks: one intra-op thread is faster than two on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
