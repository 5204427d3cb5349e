from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(_metanet_one_thread: None) -> None:
    """Every graph test on one intra-op thread (the metanets conftest's fixture)."""
