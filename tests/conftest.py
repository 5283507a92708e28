"""Shared test setup: deterministic seeds, small thread count, no GPU assumptions."""

import os

import pytest
import torch

os.environ.setdefault("TRITON_INTERPRET", "1")
# the persistent compile cache is tested on its own (tests/runtime/test_compile_cache.py);
# elsewhere every compile is a fresh one, as the tests' reports and measurements assume
os.environ.setdefault("ACCEL_COMPILE_CACHE", "0")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
