"""accel.export_onnx and ``accel export``: checked files, clear errors, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import accel
from accel.backends.onnx import exporter, registry
from accel.cli import main
from accel.errors import ExportError
from accel.ir import Rewriter, TensorType
from accel.models import get_model


def _run(path: Path, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs, strict=True)}
    return sess.run(None, feeds)[0]


@pytest.fixture(scope="module")
def vit() -> tuple[torch.nn.Module, tuple]:
    return get_model("vit_small_test", batch_size=2)


def test_export_writes_a_checked_standard_onnx_file(tmp_path: Path, vit) -> None:  # noqa: ANN001
    model, inputs = vit
    path = accel.export_onnx(model, inputs, tmp_path / "vit.onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 18)]
    assert proto.ir_version == 8  # the oldest IR carrying opset 18: older runtimes load it
    assert {n.domain for n in proto.graph.node} == {""}
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert len(proto.graph.initializer) > 0
    ref = model(*inputs).detach().numpy()
    np.testing.assert_allclose(_run(path, inputs), ref, atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["vit.onnx"]  # no temp files left


def test_export_of_a_compiled_model_uses_its_graph(tmp_path: Path, vit) -> None:  # noqa: ANN001
    model, inputs = vit
    compiled = accel.compile(model, inputs, target="reference")
    path = accel.export_onnx(compiled, inputs, tmp_path / "c.onnx", dynamic_batch=False)
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    np.testing.assert_allclose(_run(path, inputs), compiled(*inputs).numpy(), atol=1e-5)


def _graph_with_aten_fallback() -> accel.Graph:
    rw = Rewriter()
    x = rw.add_input("x", TensorType((2, 3), torch.float32))
    y = rw.op("aten", x, name="my_erfinv", target=torch.ops.aten.erfinv.default,
              args=(accel.ir.ops.fallback.TensorArg(0),))
    rw.set_outputs([rw.op("relu", y)])
    return rw.finish()


def test_aten_fallback_is_a_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"my_erfinv.*'aten' fallback.*erfinv"):
        accel.export_onnx(_graph_with_aten_fallback(), (), path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_op_without_lowering_names_op_and_node(tmp_path: Path, monkeypatch, vit) -> None:  # noqa: ANN001
    model, inputs = vit
    graph = accel.compile(model, inputs, target="reference").graph
    monkeypatch.delitem(registry._LOWERINGS, "gelu")
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous export")
    with pytest.raises(ExportError, match=r"node \S+ applies op 'gelu', which has no ONNX "
                                          r"lowering.*@onnx_lowering"):
        accel.export_onnx(graph, inputs, path)
    assert path.read_bytes() == b"previous export"


def test_failed_write_leaves_the_previous_file_intact(tmp_path: Path, monkeypatch, vit) -> None:  # noqa: ANN001
    model, inputs = vit
    graph = accel.compile(model, inputs, target="reference").graph
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous export")

    def half_write(proto, f, *args, **kwargs) -> None:  # noqa: ANN001
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(exporter.onnx, "save_model", half_write)
    with pytest.raises(ExportError, match="disk full"):
        accel.export_onnx(graph, inputs, path)
    assert path.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize("where", ["missing_dir/m.onnx", "a_dir", "a_file/m.onnx"])
def test_unwritable_path_is_a_clear_error(tmp_path: Path, where: str) -> None:
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ExportError, match="cannot write ONNX model to .*(exist|directory)"):
        accel.export_onnx(_graph_with_aten_fallback(), (), tmp_path / where)


def test_large_models_use_external_data(tmp_path: Path, monkeypatch, vit) -> None:  # noqa: ANN001
    model, inputs = vit
    monkeypatch.setattr(exporter, "EXTERNAL_DATA_BYTES", 1000)
    path = accel.export_onnx(model, inputs, tmp_path / "big.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    assert path.stat().st_size < (tmp_path / "big.onnx.data").stat().st_size
    np.testing.assert_allclose(_run(path, inputs), model(*inputs).detach().numpy(), atol=1e-4)


def test_old_opset_is_rejected(tmp_path: Path, vit) -> None:  # noqa: ANN001
    model, inputs = vit
    with pytest.raises(ExportError, match="opset 13 is too old"):
        accel.export_onnx(model, inputs, tmp_path / "m.onnx", opset=13)


def test_opset_17_still_exports(tmp_path: Path, vit) -> None:  # noqa: ANN001
    model, inputs = vit  # LayerNorm, attention, GELU, reductions: the lowerings that differ
    path = accel.export_onnx(model, inputs, tmp_path / "m.onnx", opset=17)
    proto = onnx.load(str(path))
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    assert proto.ir_version == 8
    np.testing.assert_allclose(_run(path, inputs), model(*inputs).detach().numpy(), atol=1e-4)


class _ScatterAmax(torch.nn.Module):
    def forward(self, x: torch.Tensor, index: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        return x.scatter_reduce(1, index, src, reduce="amax")


def test_max_scatter_needs_opset_18(tmp_path: Path) -> None:
    x, src = torch.randn(3, 5), torch.randn(3, 4)
    index = torch.tensor([[0, 1, 1, 4], [2, 2, 2, 0], [3, 1, 0, 0]])
    inputs = (x, index, src)
    path = accel.export_onnx(_ScatterAmax(), inputs, tmp_path / "m.onnx", dynamic_batch=False)
    np.testing.assert_array_equal(_run(path, inputs), _ScatterAmax()(*inputs).numpy())
    with pytest.raises(ExportError, match="from opset 18; export with opset=18"):
        accel.export_onnx(_ScatterAmax(), inputs, tmp_path / "o.onnx", opset=17,
                          dynamic_batch=False)
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize(("opset", "message"), [
    ("18", "give an int"), (True, "give an int"), (999, "newer than the installed onnx")])
def test_bad_opset_is_a_clear_error(tmp_path: Path, vit, opset: object,  # noqa: ANN001
                                    message: str) -> None:
    model, inputs = vit
    with pytest.raises(ExportError, match=message):
        accel.export_onnx(model, inputs, tmp_path / "m.onnx", opset=opset)  # type: ignore[arg-type]


def test_cli_export(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "m.onnx"
    assert main(["export", "resnet_small_test", "-o", str(out), "--pipeline", "default"]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out
    assert main(["export", "resnet_small_test", "-o", str(tmp_path / "no" / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
