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


def test_device_peaks_are_the_roofline_data_sheet_constants() -> None:
    from accel.backends.triton.aot import DEVICES

    bench = _load()
    assert bench.device_peaks("NVIDIA H100 80GB HBM3") is DEVICES["H100"]
    assert bench.device_peaks("NVIDIA H200") is DEVICES["H200"]
    assert bench.device_peaks("NVIDIA H200").bandwidth == 4.8e12
    assert bench.device_peaks("some unknown accelerator") is None
    assert bench._device_key("NVIDIA H200") == "H200"
    assert not hasattr(bench, "DEVICE_PEAKS")  # one table, in accel.backends.triton.aot


def test_pytest_counts_from_the_summary_line() -> None:
    bench = _load()
    lines = ["....s.F", "FAILED tests/x.py::test_y - assert 0",
             "1 failed, 5 passed, 1 skipped, 2 deselected, 1 error in 12.34s"]
    assert bench.pytest_counts(lines) == {"failed": 1, "passed": 5, "skipped": 1,
                                          "deselected": 2, "errors": 1}
    assert bench.pytest_counts(["no summary"]) == {}


def test_budget_skips_and_records_a_stage_that_does_not_fit() -> None:
    budget = _load().Budget(10.0)
    assert budget.allows("templates", 5.0)
    assert not budget.allows("model vit_b16", 60.0)
    assert [s["stage"] for s in budget.skipped] == ["model vit_b16"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA exit")
def test_exits_cleanly_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert _load().main(["--quick"]) == 0
    assert "no CUDA device" in capsys.readouterr().out
