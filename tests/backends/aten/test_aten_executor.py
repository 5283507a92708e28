"""The reference executor: slot schedule, buffer release at last use, outputs."""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable

import torch

from accel.backends.aten import AtenExecutor
from accel.ir.graph import Graph, Rewriter
from accel.ir.types import TensorType
from accel.runtime.schedule import Schedule, Step


def _chain() -> Graph:
    """x -> a=neg -> b=exp -> c=add(b, x) -> d=mul(c, c); output d and a dead-end output."""
    rw = Rewriter()
    x = rw.add_input("x", TensorType((4,), torch.float32))
    a = rw.op("neg", x, name="a")
    b = rw.op("exp", a, name="b")
    c = rw.op("add", b, x, name="c")
    d = rw.op("mul", c, c, name="d")
    w = rw.const(torch.ones(4), "w")
    e = rw.op("add", d, w, name="e")
    rw.set_outputs([e, b])
    return rw.finish()


def test_release_lists_follow_last_use() -> None:
    g = _chain()
    sched = Schedule(g)
    slot = {v.name: s for v, s in sched.slot.items()}
    release = {n.name: set(sched.release_after[i]) for i, n in enumerate(g.nodes)}
    assert release["a"] == set()  # a is read by b
    assert release["b"] == {slot["a"]}  # b is a graph output: never released
    assert release["c"] == {slot["x"]}  # last read of the input
    assert release["d"] == {slot["c"]}
    assert release["e"] == {slot["d"]}  # constants and outputs are kept
    step = sched.bind([print] * len(g.nodes))[3]
    assert isinstance(step, Step) and step.ins == (slot["c"], slot["c"])
    assert step.release == (slot["c"],) and step.name == "d"


def test_peak_live_tensors_is_bounded_on_a_long_chain() -> None:
    """Weak references to every intermediate: at most one is alive when each step starts."""
    rw = Rewriter()
    v = rw.add_input("x", TensorType((4,), torch.float32))
    for _ in range(50):
        v = rw.op("sin", v)
    rw.set_outputs([v])
    ex = AtenExecutor(rw.finish())
    assert ex.schedule.num_slots == 51 + 1  # values, and the always-empty slot
    refs: list[weakref.ref] = []
    alive: list[int] = []

    def tracked(step_fn: Callable) -> Callable:
        def fn(t: torch.Tensor) -> torch.Tensor:
            alive.append(sum(r() is not None for r in refs))
            out = step_fn(t)
            refs.append(weakref.ref(out))
            return out
        return fn

    ex.steps = [dataclasses.replace(s, fn=tracked(s.fn)) for s in ex.steps]
    x = torch.randn(4)
    (out,) = ex.run([x])
    assert len(alive) == 50 and max(alive) <= 1  # freed right after its only reader
    expected = x
    for _ in range(50):
        expected = expected.sin()
    torch.testing.assert_close(out, expected)


def test_outputs_and_constant_outputs() -> None:
    g = _chain()
    x = torch.randn(4)
    e, b = AtenExecutor(g).run([x])
    torch.testing.assert_close(b, torch.exp(-x))
    torch.testing.assert_close(e, (torch.exp(-x) + x) ** 2 + 1)
    rw = Rewriter()
    c = rw.const(torch.arange(3.0), "c")
    rw.set_outputs([c])
    const_graph = rw.finish()
    (out,) = AtenExecutor(const_graph).run([])
    out.add_(1)  # returned constants are copies: the graph's tensor is untouched
    assert torch.equal(const_graph.const(const_graph.outputs[0]), torch.arange(3.0))
