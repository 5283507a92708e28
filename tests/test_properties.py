"""Property-based tests: random graphs and random models keep their numerics through every
lossless pass, the ``default`` pipeline, ONNX export and ``accel.compile``.

Passes registered later are picked up automatically (one parametrized case per pass).
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from strategies import RandomGraph, graphs, models, tolerance

import accel
from accel.passes import PassContext, all_passes, parse_pipeline, run_pipeline
from accel.testing import assert_matches_eager, run_graph

PROPERTY = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# accel's own passes only: test modules collected earlier register deliberately broken ones
LOSSLESS = sorted(name for name, info in all_passes().items()
                  if not info.lossy and info.fn.__module__.startswith("accel."))


def _assert_same(expected: list[torch.Tensor], actual: list[torch.Tensor], dtype: torch.dtype,
                 what: str) -> None:
    assert len(expected) == len(actual), f"{what}: output count {len(actual)} != {len(expected)}"
    atol, rtol = tolerance(dtype)
    for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
        torch.testing.assert_close(a, e, atol=atol, rtol=rtol, equal_nan=True,
                                   check_dtype=True, msg=lambda m, i=i: f"{what}, output {i}: {m}")


def _run_steps(rg: RandomGraph, spec: str) -> list[torch.Tensor]:
    ctx = PassContext(example_inputs=rg.inputs, debug=True)  # debug: verify after every pass
    new, _ = run_pipeline(rg.graph, parse_pipeline(spec), ctx)
    new.verify()
    return run_graph(new, rg.inputs)


@given(rg=graphs())
@PROPERTY
def test_random_graphs_are_valid(rg: RandomGraph) -> None:
    """The strategy itself: every drawn graph verifies and runs."""
    rg.graph.verify()
    outs = run_graph(rg.graph, rg.inputs)
    assert [tuple(o.shape) for o in outs] == [v.shape for v in rg.graph.outputs]


@pytest.mark.parametrize("pass_name", LOSSLESS)
@given(rg=graphs())
@PROPERTY
def test_lossless_pass_preserves_numerics(pass_name: str, rg: RandomGraph) -> None:
    """Every lossless pass, alone, on a random graph: verifier passes, outputs unchanged."""
    expected = run_graph(rg.graph, rg.inputs)
    _assert_same(expected, _run_steps(rg, pass_name), rg.dtype, f"pass {pass_name}")


@given(rg=graphs())
@PROPERTY
def test_default_pipeline_preserves_numerics(rg: RandomGraph) -> None:
    """The ``default`` preset on a random graph."""
    expected = run_graph(rg.graph, rg.inputs)
    _assert_same(expected, _run_steps(rg, "default"), rg.dtype, "default pipeline")


def _onnx_export():  # noqa: ANN202 - returns accel.export_onnx
    try:
        importlib.import_module("accel.backends.onnx")
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("accel"):
            raise
        pytest.skip("accel.backends.onnx is not importable yet (ONNX export not implemented)")
    if not hasattr(accel, "export_onnx"):
        pytest.skip("accel.export_onnx is not there yet (ONNX export not implemented)")
    return accel.export_onnx


@given(rg=graphs(max_ops=6, dtypes=(torch.float32,)))
@PROPERTY
def test_default_pipeline_then_onnx_matches_reference(rg: RandomGraph) -> None:
    """Export the optimized float32 graph to ONNX; onnxruntime agrees with the reference.

    (The exporter rejects bfloat16; onnxruntime's CPU provider lacks float16 kernels for
    many ops, so float16 is not a property here.)
    """
    _check_onnx(rg)


@given(rg=graphs(max_ops=6, dtypes=(torch.int64,)))
@PROPERTY
def test_int64_graph_onnx_matches_reference(rg: RandomGraph) -> None:
    """Integer graphs through ONNX export and onnxruntime."""
    _check_onnx(rg)


def _check_onnx(rg: RandomGraph) -> None:
    export = _onnx_export()
    ort = pytest.importorskip("onnxruntime")
    ctx = PassContext(example_inputs=rg.inputs)
    graph, _ = run_pipeline(rg.graph, parse_pipeline("default"), ctx)
    expected = run_graph(rg.graph, rg.inputs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.onnx"
        export(graph, rg.inputs, path, pipeline="none", dynamic_batch=False)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        feeds = {n: t.numpy() for n, t in zip(names, rg.inputs, strict=True)}
        outs = [torch.from_numpy(o) for o in sess.run(None, feeds)]
    _assert_same(expected, outs, rg.dtype, "onnxruntime")


@given(case=models())
@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
def test_random_models_compile_matches_eager(case: tuple) -> None:
    """Small random nn.Sequential models through ``accel.compile`` agree with eager."""
    model, inputs = case
    compiled = accel.compile(model, inputs, debug=True)
    assert_matches_eager(compiled, model, inputs, atol=1e-5, rtol=1e-4)
