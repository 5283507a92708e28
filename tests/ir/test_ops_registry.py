"""The op registry: attribute validation, and every core op's reference on a small example
(checked against an independent torch expression and against its own type inference)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from accel.errors import AccelValueError, GraphError
from accel.ir.ops import OpDef, OpKind, all_ops, get_op, register_op
from accel.ir.ops.elementwise import BINARY_OPS, UNARY_OPS
from accel.ir.ops.fallback import TensorArg
from accel.ir.types import TensorType

A = torch.randn(2, 3)
B = torch.randn(2, 3).abs() + 0.5
IMG = torch.randn(1, 2, 6, 6)
Q, K, V = torch.randn(1, 2, 4, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
IDX = torch.tensor([2, 0])

Example = tuple[tuple, dict, Callable[[], torch.Tensor]]
_BIN_TORCH = {"logical_and": torch.logical_and, "logical_or": torch.logical_or}
U = torch.rand(2, 3) * 1.8 - 0.9  # inside (-1, 1): the domain of asin, acos, atanh
EXAMPLES: dict[str, Example] = {
    "asin": ((U,), {}, lambda: torch.atan(U / torch.sqrt(1 - U * U))),
    "acos": ((U,), {}, lambda: torch.pi / 2 - torch.atan(U / torch.sqrt(1 - U * U))),
    "atanh": ((U,), {}, lambda: 0.5 * torch.log((1 + U) / (1 - U))),
    "acosh": ((B + 1,), {}, lambda: torch.log(B + 1 + torch.sqrt((B + 1) ** 2 - 1))),
    "expm1": ((A,), {}, lambda: A.double().exp().sub(1).float()),
    "log1p": ((B,), {}, lambda: B.double().add(1).log().float()),
    "remainder": ((A * 5, B), {}, lambda: A * 5 - B * torch.floor(A * 5 / B)),
    "fmod": ((A * 5, B), {}, lambda: A * 5 - B * torch.trunc(A * 5 / B)),
    "hypot": ((A, B), {}, lambda: torch.sqrt(A * A + B * B)),
    "atan2": ((A, B), {}, lambda: torch.atan(A / B)),  # B > 0
    "div": ((A, B), {}, lambda: A / B),
    "gelu": ((A,), {"approximate": "tanh"}, lambda: F.gelu(A, approximate="tanh")),
    "clamp": ((A,), {"min": -0.5, "max": 0.5}, lambda: A.clamp(-0.5, 0.5)),
    "leaky_relu": ((A,), {"negative_slope": 0.2}, lambda: torch.where(A > 0, A, 0.2 * A)),
    "cast": ((A,), {"dtype": torch.float16}, lambda: A.half()),
    "where": ((A > 0, A, B), {}, lambda: torch.where(A > 0, A, B)),
    "sum": ((A,), {"dims": (1,)}, lambda: A.sum(1)),
    "mean": ((A,), {"dims": (0, 1), "keepdim": True}, lambda: A.mean().reshape(1, 1)),
    "amax": ((A,), {"dims": (1,)}, lambda: A.max(1).values),
    "amin": ((A,), {"dims": (1,)}, lambda: A.min(1).values),
    "var": ((A,), {"dims": (1,)}, lambda: ((A - A.mean(1, True)) ** 2).sum(1) / 2),
    "argmax": ((A,), {"dim": 1}, lambda: A.max(1).indices),
    "cumsum": ((A,), {"dim": 1}, lambda: torch.stack([A[:, :i + 1].sum(1) for i in range(3)], 1)),
    "softmax": ((A,), {"dim": 1}, lambda: A.exp() / A.exp().sum(1, True)),
    "log_softmax": ((A,), {"dim": 1}, lambda: (A.exp() / A.exp().sum(1, True)).log()),
    "layer_norm": ((A, B[0], A[0]), {"normalized_shape": (3,), "eps": 1e-5},
                   lambda: (A - A.mean(1, True)) / (A.var(1, unbiased=False, keepdim=True)
                                                    + 1e-5).sqrt() * B[0] + A[0]),
    "rms_norm": ((A,), {"normalized_shape": (3,), "eps": 1e-6},
                 lambda: A / ((A * A).mean(1, True) + 1e-6).sqrt()),
    "group_norm": ((IMG,), {"groups": 1},
                   lambda: (IMG - IMG.mean()) / (IMG.var(unbiased=False) + 1e-5).sqrt()),
    "batch_norm": ((IMG, IMG.new_tensor([0.5, -1.0]), IMG.new_tensor([2.0, 0.5])), {},
                   lambda: (IMG - torch.tensor([0.5, -1.0]).view(1, 2, 1, 1))
                   / (torch.tensor([2.0, 0.5]).view(1, 2, 1, 1) + 1e-5).sqrt()),
    "linear": ((A, B, A[0, :2]), {}, lambda: A @ B.T + A[0, :2]),
    "matmul": ((A, B.T), {}, lambda: A @ B.T),
    "conv": ((IMG, torch.ones(1, 2, 3, 3)), {"stride": (1, 1), "padding": (0, 0),
                                             "dilation": (1, 1)},
             lambda: IMG.unfold(2, 3, 1).unfold(3, 3, 1).sum((1, 4, 5)).unsqueeze(1)),
    "attention": ((Q, K, V), {}, lambda: torch.softmax(Q @ K.mT / 8 ** 0.5, -1) @ V),
    "max_pool2d": ((IMG,), {"kernel": (2, 2), "stride": (2, 2)},
                   lambda: IMG.unfold(2, 2, 2).unfold(3, 2, 2).amax((4, 5))),
    "avg_pool2d": ((IMG,), {"kernel": (2, 2), "stride": (2, 2)},
                   lambda: IMG.unfold(2, 2, 2).unfold(3, 2, 2).mean((4, 5))),
    "adaptive_avg_pool2d": ((IMG,), {"output_size": (1, 1)}, lambda: IMG.mean((2, 3), True)),
    "embedding": ((A, IDX % 2), {}, lambda: torch.stack([A[0], A[0]])),
    "reshape": ((A,), {"shape": (3, 2)}, lambda: A.flatten().view(3, 2)),
    "permute": ((A,), {"dims": (1, 0)}, lambda: A.T),
    "expand": ((A[:1],), {"shape": (4, 3)}, lambda: A[:1].repeat(4, 1)),
    "slice": ((A,), {"dim": 1, "start": 1, "end": 3}, lambda: A[:, 1:3]),
    "select": ((A,), {"dim": 1, "index": 2}, lambda: A[:, 2]),
    "concat": ((A, B), {"dim": 0}, lambda: torch.vstack([A, B])),
    "pad": ((A,), {"pads": (1, 0), "value": 2.0},
            lambda: torch.cat([torch.full((2, 1), 2.0), A], 1)),
    "index_select": ((A, IDX % 2), {"dim": 0}, lambda: A[IDX % 2]),
    "gather": ((A, torch.zeros(2, 1, dtype=torch.long)), {"dim": 1}, lambda: A[:, :1]),
    "aten": ((A,), {"target": torch.ops.aten.flip.default, "args": (TensorArg(0), (1,))},
             lambda: A[:, [2, 1, 0]]),
}
for _name in UNARY_OPS - set(EXAMPLES):
    _fn = getattr(torch, _name, None) or getattr(F, _name)
    _x = (A > 0) if _name == "logical_not" else B
    EXAMPLES[_name] = ((_x,), {}, (lambda f, x: lambda: f(x))(_fn, _x))
for _name in BINARY_OPS - set(EXAMPLES):
    _fn = _BIN_TORCH.get(_name) or getattr(torch, _name)
    _args = (A > 0, B > 1) if _name in _BIN_TORCH else (B, A)
    EXAMPLES[_name] = (_args, {}, (lambda f, a: lambda: f(*a))(_fn, _args))

CORE_OPS = {"attention", "aten", "batch_norm", "concat", "conv", "embedding", "gather", "linear",
            "matmul", "reshape", "permute", "softmax", "where"} | UNARY_OPS | BINARY_OPS


def test_every_core_op_has_an_example() -> None:
    assert set(EXAMPLES) <= set(all_ops())
    assert CORE_OPS <= set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_reference_on_small_example(name: str) -> None:
    inputs, attrs, expected = EXAMPLES[name]
    op = get_op(name)
    attrs = op.normalize_attrs(attrs, "example")
    out = op.ref(*inputs, **attrs)
    torch.testing.assert_close(out, expected(), atol=1e-5, rtol=1e-5, check_dtype=True)
    (inferred,) = op.infer_types([TensorType.of(t) for t in inputs], attrs)
    assert (inferred.shape, inferred.dtype) == (tuple(out.shape), out.dtype)
    assert op.count_flops([TensorType.of(t) for t in inputs], [inferred], attrs) >= 0


def test_attr_validation_errors() -> None:
    softmax = get_op("softmax")
    with pytest.raises(GraphError, match=r"op 'softmax' \(node n1\): unknown attribute\(s\) "
                                         r"\['axis'\]; valid: \['dim'\]"):
        softmax.normalize_attrs({"dim": 1, "axis": 0}, "n1")
    with pytest.raises(GraphError, match="missing attribute 'dim'"):
        softmax.normalize_attrs({}, "n1")
    with pytest.raises(GraphError, match="attribute 'dim' must be int, got float 1.5"):
        softmax.normalize_attrs({"dim": 1.5}, "n1")
    eps = get_op("layer_norm").normalize_attrs({"normalized_shape": [3], "eps": 0}, "n2")
    assert eps == {"normalized_shape": (3,), "eps": 0.0} and isinstance(eps["eps"], float)
    with pytest.raises(GraphError, match="takes inputs"):
        get_op("linear").check_inputs(1, "n3")


def test_registry_errors() -> None:
    with pytest.raises(AccelValueError, match="unknown IR op 'nope'; registered ops: .*linear"):
        get_op("nope")
    with pytest.raises(AccelValueError, match="already registered"):
        register_op(OpDef("add", ("a", "b"), torch.add, OpKind.POINTWISE))


def test_shape_inference_error_names_op() -> None:
    with pytest.raises(GraphError, match="op 'matmul': shape inference failed"):
        get_op("matmul").infer_types([TensorType((2, 3), torch.float32),
                                      TensorType((4, 5), torch.float32)], {})
