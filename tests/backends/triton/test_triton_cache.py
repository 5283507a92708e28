"""The on-disk kernel cache: keys, checksums, corrupt-entry rebuild, atomic concurrent writes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from accel import env
from accel.backends.triton import cache

SOURCE = '''import triton
import triton.language as tl


@triton.jit
def double_kernel(x, out, n, BLOCK: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out + idx, tl.load(x + idx, mask=idx < n) * 2, mask=idx < n)
'''


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCEL_CACHE_DIR", str(tmp_path / "cache"))


def test_env_overrides_cache_dir(tmp_path: Path) -> None:
    assert env.cache_dir() == tmp_path / "cache"
    path = cache.kernel_path("double_kernel", SOURCE, interpret=True)
    assert path.is_relative_to(tmp_path / "cache") and path.read_text() == SOURCE


def test_key_depends_on_source_and_device() -> None:
    k = cache.cache_key(SOURCE, "dev-a")
    assert k == cache.cache_key(SOURCE, "dev-a")
    assert k != cache.cache_key(SOURCE, "dev-b")
    assert k != cache.cache_key(SOURCE + "\n", "dev-a")


def test_corrupt_entry_is_rebuilt() -> None:
    path = cache.kernel_path("double_kernel", SOURCE, interpret=True)
    path.write_text(SOURCE[: len(SOURCE) // 2])  # a torn write
    again = cache.kernel_path("double_kernel", SOURCE, interpret=True)
    assert again == path and path.read_text() == SOURCE
    checksum = Path(f"{path}.sha256")
    checksum.write_text("0" * 64)  # a bad checksum alone also triggers a rebuild
    cache.kernel_path("double_kernel", SOURCE, interpret=True)
    assert checksum.read_text().strip() != "0" * 64


def test_concurrent_writers_leave_a_valid_entry() -> None:
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(
        cache.kernel_path("double_kernel", SOURCE, interpret=True))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 1 and paths[0].read_text() == SOURCE
    assert not list(paths[0].parent.glob("*.tmp"))


def test_loaded_kernel_runs_under_the_interpreter() -> None:
    import torch

    kernel = cache.load_kernel("double_kernel", SOURCE, interpret=True)
    x = torch.arange(10, dtype=torch.float32)
    out = torch.empty_like(x)
    kernel[(1,)](x, out, 10, BLOCK=16)
    torch.testing.assert_close(out, x * 2)


def test_dump_source_writes_named_file(tmp_path: Path) -> None:
    path = cache.dump_source(tmp_path / "dump", "double_kernel", SOURCE)
    assert path == tmp_path / "dump" / "kernels" / "double_kernel.py"
    assert path.read_text() == SOURCE
