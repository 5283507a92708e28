"""aten fallback nodes export through torch.onnx's own ONNX functions (torchlib), or fail
naming the node and the op."""

from __future__ import annotations

import pytest
import torch

from accel.backends.onnx.exporter import graph_to_onnx
from accel.backends.onnx.torchlib import TORCHLIB_DENYLIST
from accel.errors import ExportError
from accel.ir import Rewriter, TensorType
from accel.ir.ops.fallback import TensorArg
from tests.backends.onnx.test_onnx_ops import run_onnx


def _graph(target, shape: tuple[int, ...], *args) -> object:  # noqa: ANN001
    rw = Rewriter()
    x = rw.add_input("x", TensorType(shape, torch.float32))
    y = rw.op("aten", x, name="fb", target=target, args=(TensorArg(0), *args))
    rw.set_outputs([rw.op("relu", y)])
    return rw.finish()


def test_fallback_exports_through_torch_onnx_and_matches_eager() -> None:
    x = torch.randn(2, 3, 3)
    model = graph_to_onnx(_graph(torch.ops.aten.linalg_det.default, (2, 3, 3)))
    (out,) = run_onnx(model, [x])
    torch.testing.assert_close(torch.from_numpy(out), torch.linalg.det(x).relu(), rtol=1e-4,
                               atol=1e-5)
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)


def test_fallback_torch_onnx_cannot_export_names_node_and_op() -> None:
    with pytest.raises(ExportError, match=r"node fb is an 'aten' fallback \(aten.erfinv"):
        graph_to_onnx(_graph(torch.ops.aten.erfinv.default, (2, 3)))


def test_fallback_torch_onnx_exports_wrong_is_refused() -> None:
    assert "aten.as_strided.default" in TORCHLIB_DENYLIST
    with pytest.raises(ExportError, match="known to differ from eager"):
        graph_to_onnx(_graph(torch.ops.aten.as_strided.default, (2, 3), (3,), (1,)))


def test_fallbacks_without_torch_onnx_stay_an_error() -> None:
    with pytest.raises(ExportError, match="'aten' fallback"):
        graph_to_onnx(_graph(torch.ops.aten.linalg_det.default, (2, 3, 3)),
                      torch_onnx_fallbacks=False)
