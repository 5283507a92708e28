"""The IR interpreter agrees with the runtime's executor and observes every node output."""

import torch

from accel.backends.aten import AtenExecutor
from accel.frontend import capture
from accel.ir.interpreter import interpret
from accel.models import get_model


def test_interpret_matches_executor_and_eager_and_observes_every_output() -> None:
    model, inputs = get_model("bert_small_test", batch_size=2)
    graph = capture(model, inputs)
    seen: list[str] = []
    out = interpret(graph, inputs, lambda v, t: seen.append(v.name))
    with torch.no_grad():
        eager = model(*inputs)
    torch.testing.assert_close(out[0], AtenExecutor(graph).run(inputs)[0], rtol=0, atol=0)
    torch.testing.assert_close(out[0], eager, rtol=1e-5, atol=1e-5)
    assert seen == [o.name for n in graph.nodes for o in n.outputs]
