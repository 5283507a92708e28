"""The Triton backend's table of kernel kinds: each kind's op set is derived from the table it
mirrors (no hand copies), names are checked, and the partitioner offers nodes in table order."""

from __future__ import annotations

import pytest
import torch

from accel.backends.triton.kernel import KernelKind
from accel.backends.triton.kernels import int8, sparse24, tokens, weight_only
from accel.backends.triton.kinds import ATEN, BY_NAME, KINDS
from accel.backends.triton.partition import partition
from accel.backends.triton.templates import attention, matmul, pointwise, reduction
from accel.backends.triton.templates.expr import POINTWISE_EXPR
from accel.errors import AccelValueError
from accel.ir.graph import Rewriter
from accel.ir.types import TensorType


def test_op_sets_come_from_the_tables_they_mirror() -> None:
    assert BY_NAME["pointwise"].ops == frozenset(POINTWISE_EXPR)
    assert BY_NAME["reduction"].ops == frozenset(reduction.ROW_OPS)
    assert BY_NAME["int8_linear"].ops == frozenset(int8.ACTIVATION_QUANTIZERS)
    assert BY_NAME["token"].ops == frozenset(tokens.TOKEN_KERNELS)
    assert BY_NAME["weight_only"].ops == frozenset({"linear_weight_only"})


def test_table_order_and_shape() -> None:
    assert KINDS[-1] is ATEN and ATEN.ops is None
    assert len(BY_NAME) == len(KINDS)  # names unique
    modules = {sparse24, int8, weight_only, tokens, attention, matmul, reduction, pointwise}
    assert {m.KIND for m in modules} == set(KINDS) - {ATEN}  # each kind lives in one module
    templates = {k.name for k in KINDS if k.emit is not None}
    assert templates == {"pointwise", "reduction", "matmul", "attention"}
    assert [k.name for k in KINDS if k.chains] == ["pointwise"]


def test_a_kind_naming_an_unknown_op_fails_at_definition() -> None:
    with pytest.raises(AccelValueError, match="Triton kernel kind 'typo'.*'linaer'.*'linear'"):
        KernelKind("typo", frozenset({"linaer"}), pointwise.claim, pointwise.launch)


def test_the_first_kind_in_table_order_claims_a_node() -> None:
    """A linear with a GELU after it: matmul (earlier in the table) takes the GELU as its
    epilogue before the pointwise kind sweeps; without matmul, pointwise claims the GELU."""
    rw = Rewriter()
    x = rw.add_input("x", TensorType((4, 8), torch.float32))
    w = rw.const(torch.randn(16, 8), "w")
    rw.set_outputs([rw.op("gelu", rw.op("linear", x, w))])
    graph = rw.finish()
    (group,) = partition(graph, KINDS)
    assert group.kind is BY_NAME["matmul"] and [n.op for n in group.nodes] == ["linear", "gelu"]
    without = [k for k in KINDS if k is not BY_NAME["matmul"]]
    kinds = [g.kind.name for g in partition(graph, without)]
    assert kinds == ["aten", "pointwise"]
