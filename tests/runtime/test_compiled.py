"""CompiledModel: guards, recompilation for new shapes, bounded cache, output structure."""

from __future__ import annotations

import pytest
import torch

import accel
from accel.errors import AccelError, GuardError


class TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.fc(x)
        return {"h": h, "pair": (h.relu(), y * 2)}


@pytest.fixture
def compiled() -> accel.CompiledModel:
    return accel.compile(TwoInputs().eval(), (torch.randn(2, 8), torch.randn(3)),
                         target="reference")


def test_output_structure_is_rebuilt(compiled: accel.CompiledModel) -> None:
    x, y = torch.randn(2, 8), torch.randn(3)
    out = compiled(x, y)
    assert isinstance(out, dict) and isinstance(out["pair"], tuple)
    torch.testing.assert_close(out["pair"][1], y * 2)
    torch.testing.assert_close(out["pair"][0], out["h"].relu())


def test_new_shape_recompiles_and_is_cached(compiled: accel.CompiledModel) -> None:
    assert compiled.specializations == 1
    compiled(torch.randn(5, 8), torch.randn(3))
    assert compiled.report.recompilations == 1 and compiled.specializations == 2
    compiled(torch.randn(5, 8), torch.randn(3))  # cached: no new compilation
    compiled(torch.randn(2, 8), torch.randn(3))
    assert compiled.report.recompilations == 1
    assert "1 recompilation(s)" in compiled.report.summary()


def test_automatic_dynamic_compiles_once_for_every_batch(compiled: accel.CompiledModel) -> None:
    """The first new batch size makes the batch symbolic: later sizes reuse that compile."""
    for b in range(3, 13):
        out = compiled(torch.randn(b, 8), torch.randn(3))
        assert out["h"].shape == (b, 4)
    assert compiled.report.recompilations == 1 and compiled.specializations == 2
    dyn = next(s for s in compiled._specs if s.guard.dynamic)  # noqa: SLF001
    assert str(dyn.graph.inputs[0].type) == "f32[batch,8]"
    assert "batch in [2, inf]" in dyn.guard.describe()


class StaticOnly(torch.nn.Module):
    """Reads its batch size as a Python number: torch.export keeps that dim static."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float(x.shape[0])


def test_cache_is_bounded_and_warns() -> None:
    compiled = accel.compile(StaticOnly(), torch.randn(2, 8), target="reference")
    with pytest.warns(UserWarning, match="recompiled 8 times"):
        for b in range(3, 13):
            torch.testing.assert_close(compiled(torch.randn(b, 8)).sum() * 0, torch.tensor(0.0))
    assert compiled.report.recompilations == 10
    assert compiled.specializations == 8  # least recently used evicted
    assert not any(s.guard.dynamic for s in compiled._specs)  # noqa: SLF001
    compiled(torch.randn(2, 8))  # evicted: compiles again
    assert compiled.report.recompilations == 11


@pytest.mark.parametrize(("args", "match"), [
    ((torch.randn(2, 8),), r"compiled for 2 input\(s\), called with 1"),
    ((torch.randn(2, 8), torch.randn(3), torch.randn(3)), r"compiled for 2 input\(s\), called "
                                                          r"with 3"),
    ((torch.randn(2, 2, 8), torch.randn(3)), r"input 0 has rank 3 \(shape \(2, 2, 8\)\), "
                                             r"compiled for rank 2"),
    ((torch.randn(2, 8).double(), torch.randn(3)), r"input 0 is torch.float64, compiled for "
                                                   r"torch.float32; convert it with "
                                                   r"\.to\(torch.float32\)"),
    ((torch.randn(2, 8), torch.randn(3, device="meta")), r"input 1 is on meta, compiled for "
                                                         r"cpu; move it with \.to\('cpu'\)"),
    ((torch.randn(2, 8), 3.0), r"input 1 is a float, expected a tensor"),
])
def test_guard_errors(compiled: accel.CompiledModel, args: tuple, match: str) -> None:
    with pytest.raises(GuardError, match=match) as e:
        compiled(*args)
    assert isinstance(e.value, AccelError) and isinstance(e.value, ValueError)
    assert compiled.report.recompilations == 0


def test_keyword_arguments_rejected(compiled: accel.CompiledModel) -> None:
    with pytest.raises(GuardError, match="pass inputs positionally"):
        compiled(torch.randn(2, 8), y=torch.randn(3))


def test_repr_and_graph(compiled: accel.CompiledModel) -> None:
    assert compiled.graph.op_counts()["linear"] == 1
    assert repr(compiled).startswith("<CompiledModel TwoInputs: ")
    assert "target=reference, 1 specialization(s)" in repr(compiled)
    assert compiled.report.compile_seconds > 0
