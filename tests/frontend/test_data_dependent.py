"""Ops whose output sizes depend on the data (accel/frontend/aten_select.py): captured as IR
built on ``nonzero``, whose size is a counted symbol of a value the graph computes. Each
is checked on the reference and cpu targets and through ONNX in onnxruntime against eager,
at two inputs of one shape whose outputs have different sizes (one compiled graph, one
exported model, serving both)."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
import torch

import accel
from accel.ir.ops.registry import OpKind


class Fn(torch.nn.Module):
    def __init__(self, fn) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor):  # noqa: ANN202
        return self.fn(*xs)


def _x(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


CASES = {
    "argwhere": (torch.argwhere, (_x(0, 1, 0, 2, 3),), (_x(1, 0, 0, 0, 0),)),
    "nonzero_2d": (torch.nonzero, (torch.tensor([[0, 1.], [2, 0]]),),
                   (torch.tensor([[0, 0.], [0, 5]]),)),
    "nonzero_tuple": (lambda x: torch.nonzero(x, as_tuple=True),
                      (torch.tensor([[0, 1.], [2, 3]]),), (torch.tensor([[0, 0.], [4, 0]]),)),
    "masked_select": (torch.masked_select, (torch.randn(3, 4), torch.randn(3, 4) > 0),
                      (torch.randn(3, 4), torch.randn(3, 4) > 1)),
    "masked_select_broadcast": (torch.masked_select,
                                (torch.randn(4), torch.tensor([[True], [False]])),
                                (torch.randn(4), torch.tensor([[True], [True]]))),
    "bool_index": (lambda x: x[x > 0] * 2, (torch.randn(3, 4),), (torch.randn(3, 4) + 1,)),
    "bool_index_rows": (lambda x, m: (x[m].sum(1), x[m].sum(0)),
                        (torch.randn(4, 3), _x(1, 0, 1, 1) > 0),
                        (torch.randn(4, 3), _x(0, 0, 1, 0) > 0)),
    "bool_index_inner": (lambda x, m: x[:, m], (torch.randn(2, 4), _x(1, 0, 1, 1) > 0),
                         (torch.randn(2, 4), _x(0, 1, 0, 0) > 0)),
    "unique": (torch.unique, (_x(3, 1, 2, 3, 1),), (_x(5, 5, 5, 5, 4),)),
    "unique_all": (lambda x: torch.unique(x, return_inverse=True, return_counts=True),
                   (torch.tensor([[3., 1], [2, 3], [1, 1]]),),
                   (torch.tensor([[7., 7], [7, 7], [0, 7]]),)),
    "unique_int": (lambda x: torch.unique(x, sorted=False, return_counts=True),
                   (torch.tensor([4, 4, 1, 9]),), (torch.tensor([2, 2, 2, 2]),)),
    "unique_nan": (torch.unique, (_x(1, float("nan"), 1, float("nan")),), (_x(2, 2, 1, 1),)),
    "unique_consecutive": (
        lambda x: torch.unique_consecutive(x, return_inverse=True, return_counts=True),
        (_x(1, 1, 2, 2, 2, 1),), (_x(1, 2, 3, 4, 5, 6),)),
    "tensor_split": (lambda x, i: torch.tensor_split(x, i, dim=1),
                     (torch.randn(2, 6), torch.tensor([1, 4])),
                     (torch.randn(2, 6), torch.tensor([-2, 3]))),
    "tensor_split_unsorted": (torch.tensor_split, (torch.randn(5, 2), torch.tensor([3, 1, 9])),
                              (torch.randn(5, 2), torch.tensor([0, 0, 5]))),
}


def _flat(out) -> list[torch.Tensor]:  # noqa: ANN001
    return list(out) if isinstance(out, list | tuple) else [out]


def _sizes(out) -> list[tuple[int, ...]]:  # noqa: ANN001
    return [tuple(t.shape) for t in _flat(out)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_and_cpu_targets_match_eager_at_two_sizes(case: str) -> None:
    fn, first, second = CASES[case]
    model = Fn(fn)
    assert _sizes(model(*first)) != _sizes(model(*second)), "the case must change sizes"
    for target in ("reference", "cpu"):
        compiled = accel.compile(model, first, target=target)
        assert not compiled.graph.fallbacks(), compiled.graph.fallbacks()
        assert compiled.graph.find("nonzero"), "a data-dependent size comes from nonzero"
        for inputs in (first, second):
            torch.testing.assert_close(compiled(*inputs), model(*inputs), equal_nan=True)
        assert compiled.specializations == 1, "one graph serves every count"


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_in_onnxruntime_matches_eager_at_two_sizes(case: str, tmp_path) -> None:  # noqa: ANN001
    fn, first, second = CASES[case]
    model = Fn(fn)
    path = accel.export_onnx(model, first, tmp_path / "m.onnx", dynamic_batch=False)
    proto = onnx.load(str(path))
    assert any(n.op_type == "NonZero" for n in proto.graph.node)
    dims = [d.dim_param for o in proto.graph.output for d in o.type.tensor_type.shape.dim]
    assert any(d.startswith("nnz") for d in dims), dims  # a named dynamic output dim
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    for inputs in (first, second):
        got = sess.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
        expected = _flat(model(*inputs))
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(torch.from_numpy(g), e, equal_nan=True)


def test_graph_declares_the_counted_symbol_of_a_computed_mask() -> None:
    compiled = accel.compile(Fn(lambda x: x[x > 0]), (torch.randn(3, 4),), target="reference")
    g = compiled.graph
    (nz,) = g.find("nonzero")
    assert nz.opdef.kind is OpKind.GATHER and nz.opdef.defines_count
    name = nz.attrs["count"]
    counted = g.computed_counts()
    assert counted == {name: nz.inputs[0]}
    assert g.producer(nz.inputs[0]) is not None  # a value the graph computes, not an input
    info = g.symbols[name]
    assert (info.lo, info.hi) == (0, 12)
    assert f"{name} = int(torch.count_nonzero(" in g.python()
    assert str(g.outputs[0].shape[0]) == name


def test_all_zero_input_gives_empty_outputs() -> None:
    model = Fn(lambda x, m: (torch.argwhere(x), x[m]))
    x, m = torch.randn(2, 3), torch.randn(2, 3) > 0
    compiled = accel.compile(model, (x, m), target="reference")
    out = compiled(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    assert out[0].shape == (0, 2) and out[1].shape == (0,)


def test_what_stays_unsupported_is_a_clear_error() -> None:
    # unique along a dim (aten.unique_dim) has no IR lowering; its size depends on the data
    with pytest.raises(accel.AccelError, match="unique_dim"):
        accel.compile(Fn(lambda x: torch.unique(x, dim=0)), (torch.randn(3, 2),),
                      target="reference")


DYNAMIC = {  # case: inputs of another batch size than CASES' (dim 0 of the first input)
    "argwhere": (_x(0, 2, 0, 0, 1, 1, 0, 3),),
    "bool_index": (torch.randn(5, 4),),
    "nonzero_tuple": (torch.tensor([[0, 1.], [2, 3], [0, 0]]),),
    "unique_all": (torch.tensor([[3., 1], [2, 3], [1, 1], [9, 9], [3, 0]]),),
    "unique_int": (torch.tensor([4, 4, 1, 9, 0, 1, 1]),),
    "unique_consecutive": (_x(1, 1, 2, 2, 2, 1, 1, 7, 7),),
    "tensor_split": (torch.randn(4, 6), torch.tensor([2, 2])),
}


@pytest.mark.parametrize("case", sorted(DYNAMIC))
def test_symbolic_batch_with_data_dependent_sizes(case: str, tmp_path) -> None:  # noqa: ANN001
    fn, first, second = CASES[case]
    model, other = Fn(fn), DYNAMIC[case]
    compiled = accel.compile(model, first, target="reference", dynamic_shapes="auto")
    assert not compiled.graph.fallbacks() and not compiled.graph.inputs[0].type.is_static
    path = accel.export_onnx(model, first, tmp_path / "m.onnx")  # dim 0 dynamic (default)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    for inputs in (first, second, other):
        expected = model(*inputs)
        torch.testing.assert_close(compiled(*inputs), expected, equal_nan=True)
        got = sess.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
        for g, e in zip(got, _flat(expected), strict=True):
            torch.testing.assert_close(torch.from_numpy(g), e, equal_nan=True)
    assert compiled.specializations == 1


def test_a_count_used_only_as_a_size_keeps_its_nonzero_node() -> None:
    """``nonzero``'s output is dead, but its count sizes another tensor: the node stays and
    runs first (the graph orders nodes after the counts they use)."""
    model = Fn(lambda x: x.new_ones(torch.nonzero(x > 1).shape[0]) * 2)
    first, second = (_x(0, 3, 2, 0),), (_x(5, 0, 0, 0),)
    compiled = accel.compile(model, first, target="reference")
    (nz,) = compiled.graph.find("nonzero")
    order = list(compiled.graph.nodes)
    users = [n for n in order if nz.attrs["count"] in str(n.outputs[0].shape) and n is not nz]
    assert users and all(order.index(nz) < order.index(u) for u in users)
    for inputs in (first, second):
        torch.testing.assert_close(compiled(*inputs), model(*inputs))


@pytest.mark.parametrize(("r", "with_replacement"), [(1, False), (1, True)])
def test_combinations_is_a_constant_gather(r: int, with_replacement: bool, tmp_path) -> None:  # noqa: ANN001
    """ATen computes combinations with a masked_select, but its size is static. (torch.export
    itself fails on r >= 2 with torch 2.13: PendingUnbackedSymbolNotFound.)"""
    model = Fn(lambda x: torch.combinations(x, r, with_replacement))
    x = torch.randn(4)
    compiled = accel.compile(model, (x,), target="reference")
    assert not compiled.graph.fallbacks() and not compiled.graph.find("nonzero")
    torch.testing.assert_close(compiled(x), model(x))
    path = accel.export_onnx(model, (x,), tmp_path / "c.onnx", dynamic_batch=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), model(x))


def test_nonzero_static_pads_and_cuts_to_its_size(tmp_path) -> None:  # noqa: ANN001
    model = Fn(lambda x: torch.nonzero_static(x, size=3, fill_value=-2))
    first, second = torch.tensor([[0, 1.], [2, 0]]), torch.tensor([[4, 1.], [2, 3]])
    compiled = accel.compile(model, (first,), target="reference")
    assert not compiled.graph.fallbacks()
    path = accel.export_onnx(model, (first,), tmp_path / "n.onnx", dynamic_batch=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x in (first, second, torch.zeros(2, 2)):
        torch.testing.assert_close(compiled(x), model(x))
        (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), model(x))


def test_triton_kernels_run_on_a_computed_count() -> None:
    """The cuda target (Triton, here under TRITON_INTERPRET): kernels after ``nonzero`` get
    the count as a size, known once the mask is computed."""
    from accel.backends.triton.executor import TritonExecutor

    model = Fn(lambda x: (((x[x > 0] * 2 + 1).relu() * 3).exp(), torch.unique(x)))
    x = torch.randn(4, 8)
    compiled = accel.compile(model, (x,), target="cuda", options={"interpret": True})
    assert isinstance(compiled._first.executable, TritonExecutor)
    assert any(line.startswith("triton ") for line in compiled.report.lowering)
    for inputs in ((x,), (torch.randn(4, 8) + 1,), (torch.zeros(4, 8),)):
        out, expected = compiled(*inputs), model(*inputs)
        for a, e in zip(out, expected, strict=True):
            torch.testing.assert_close(a.cpu(), e)
