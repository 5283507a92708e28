"""benchmarks/gpu.py: imports, builds its template graphs on CPU, exits cleanly without CUDA."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from accel.backends.triton.kinds import BY_NAME, KINDS
from accel.backends.triton.partition import partition

GPU_BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("accel_bench_gpu", GPU_BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_template_cases_fuse_into_one_kernel_of_their_kind() -> None:
    bench = _load()
    for case in bench.template_cases():
        graph, inputs = case.build(torch.device("cpu"), torch.float32, 256)
        groups = partition(graph, KINDS)
        assert [g.kind for g in groups] == [BY_NAME[case.kind]], case.name
        flops, nbytes = bench.traffic(graph)
        assert nbytes >= sum(t.numel() * t.element_size() for t in inputs)
        assert flops > 0


def test_device_peak_lookup() -> None:
    bench = _load()
    assert bench.device_peaks("NVIDIA H100 PCIe") == (756.0, 2.0)
    assert bench.device_peaks("NVIDIA H100 80GB HBM3") == (989.0, 3.35)
    assert bench.device_peaks("NVIDIA H200") == (989.0, 4.8)
    assert bench.device_peaks("some unknown accelerator") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA exit")
def test_exits_cleanly_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert _load().main(["--quick"]) == 0
    assert "no CUDA device" in capsys.readouterr().out
