"""The op registry: one :class:`OpDef` per IR op.

An op declares, in one place: its inputs and typed attributes, its shape/dtype inference,
its reference implementation in ATen (the ground truth for tests and the fallback
executor), and its cost (FLOPs; bytes are derived from the types). Backends (Triton, ONNX)
keep their own tables keyed by op name, so the IR knows nothing of them.
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch

from accel.errors import AccelValueError, GraphError
from accel.ir.shapes import Symbols, infer_symbolic, is_symbolic
from accel.ir.types import TensorType


class OpKind(enum.Enum):
    """The broad class of an op, used by cost models, fusion and reports."""

    POINTWISE = "pointwise"  # elementwise, with broadcasting
    REDUCTION = "reduction"  # reduces one or more dims (sum, softmax, norms)
    MATMUL = "matmul"  # linear, matmul
    CONV = "conv"  # convolution, pooling
    ATTENTION = "attention"  # fused scaled-dot-product attention
    SHAPE = "shape"  # data movement without arithmetic (reshape, permute, slice, concat)
    GATHER = "gather"  # indexing (embedding, gather, index_select)
    QUANT = "quant"  # quantized ops and (de)quantization
    TOKEN = "token"  # token reduction (merge, prune)
    FALLBACK = "fallback"  # an ATen op with no IR lowering, run as is


_NO_DEFAULT = object()


@dataclass(frozen=True)
class Attr:
    """A typed attribute of an op: its Python type(s) and default."""

    type: type | tuple[type, ...]
    default: Any = _NO_DEFAULT
    doc: str = ""

    @property
    def required(self) -> bool:
        """Whether a node must set this attribute."""
        return self.default is _NO_DEFAULT

    def check(self, value: Any, where: str, key: str) -> Any:
        """``value`` if it has this attribute's type (ints widen to float); else GraphError."""
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        if isinstance(value, types):
            return value
        if int in types and isinstance(value, sympy.Expr) and value.is_integer:
            return value  # a symbolic size (slice end, expand size...)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        names = " or ".join("None" if t is type(None) else t.__name__ for t in types)
        raise GraphError(f"{where}: attribute '{key}' must be {names}, got "
                         f"{type(value).__name__} {value!r}")


InferFn = Callable[[Sequence["TensorType | None"], Mapping[str, Any]], tuple[TensorType, ...]]
FlopsFn = Callable[[Sequence["TensorType | None"], Sequence[TensorType], Mapping[str, Any]], int]


@dataclass(frozen=True)
class OpDef:
    """Everything accel knows about one IR op."""

    name: str
    """Op name as written in graphs and pipelines (``linear``, ``add``)."""
    inputs: tuple[str, ...]
    """Input names; a trailing ``?`` marks an optional input, ``*`` a variadic one."""
    ref: Callable[..., Any]
    """Reference ATen implementation: ``ref(*input_tensors, **attrs)``."""
    kind: OpKind
    """Broad class of the op."""
    attrs: Mapping[str, Attr] = field(default_factory=dict)
    """Typed attributes with defaults."""
    infer: InferFn | None = None
    """Shape/dtype inference; ``None`` runs ``ref`` on meta tensors."""
    flops: FlopsFn | None = None
    """FLOP count; ``None`` counts one per output element (pointwise)."""
    num_outputs: int = 1
    """Number of output values."""
    doc: str = ""
    """One-line description."""
    aliases: bool = False
    """The reference may return an input itself (``cast`` to the same dtype); shape ops and
    fallbacks may anyway (see :attr:`may_alias`)."""
    defines_count: bool = False
    """A node of this op *defines* the counted size symbol its ``count`` attribute names: the
    number of nonzero entries of the node's first input, a size that depends on the data
    (``nonzero``, ``token_offsets``; see :meth:`accel.ir.graph.Graph.counted_symbols`)."""

    @property
    def may_alias(self) -> bool:
        """Whether an output may share memory with an input (views, pass-throughs): an
        executor reusing buffers must keep an input's buffer alive as long as the output."""
        return self.aliases or self.kind in (OpKind.SHAPE, OpKind.FALLBACK)

    @property
    def variadic(self) -> bool:
        """Whether the op takes a variable number of inputs (concat)."""
        return bool(self.inputs) and self.inputs[-1].endswith("*")

    def check_inputs(self, n: int, node: str = "") -> None:
        """Raise if ``n`` inputs do not fit this op's signature."""
        if self.variadic:
            lo, hi = len(self.inputs) - 1, math.inf
        else:
            lo = sum(not i.endswith("?") for i in self.inputs)
            hi = len(self.inputs)
        if not lo <= n <= hi:
            where = f" (node {node})" if node else ""
            raise GraphError(
                f"op '{self.name}'{where} takes inputs {list(self.inputs)}, got {n}"
            )

    def normalize_attrs(self, attrs: Mapping[str, Any], node: str = "") -> dict[str, Any]:
        """Validate ``attrs`` against the schema, fill defaults, freeze lists to tuples."""
        where = f" (node {node})" if node else ""
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise GraphError(
                f"op '{self.name}'{where}: unknown attribute(s) {sorted(unknown)}; "
                f"valid: {sorted(self.attrs)}"
            )
        out: dict[str, Any] = {}
        for key, spec in self.attrs.items():
            if key in attrs:
                out[key] = spec.check(freeze(attrs[key]), f"op '{self.name}'{where}", key)
            elif spec.required:
                raise GraphError(f"op '{self.name}'{where}: missing attribute '{key}'")
            else:
                out[key] = spec.default
        return out

    def infer_types(
        self, inputs: Sequence[TensorType | None], attrs: Mapping[str, Any],
        symbols: Symbols | None = None,
    ) -> tuple[TensorType, ...]:
        """Output types for these input types and attributes; ``symbols`` (the graph's symbol
        table) gives the ranges of any symbolic dims."""
        if self.infer is not None:
            return tuple(self.infer(inputs, attrs))
        if any(t is not None and not t.is_static for t in inputs) or is_symbolic(
                tuple(attrs.values())):
            return infer_by_fake(self, inputs, attrs, symbols or {})
        return infer_by_meta(self, inputs, attrs)

    def count_flops(
        self,
        inputs: Sequence[TensorType | None],
        outputs: Sequence[TensorType],
        attrs: Mapping[str, Any],
    ) -> int:
        """FLOPs of one execution (an expression when shapes are symbolic)."""
        if self.flops is not None:
            f = self.flops(inputs, outputs, attrs)
            return f if isinstance(f, sympy.Basic) else int(f)
        return sum(o.numel for o in outputs) if self.kind is OpKind.POINTWISE else 0


def freeze(value: Any) -> Any:
    """Make an attribute value hashable: lists become tuples, recursively; sympy numbers
    become ints."""
    if isinstance(value, torch.Size):
        return tuple(int(v) for v in value)
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, sympy.Basic) and value.is_number:
        return int(value)
    return value


def infer_by_meta(
    op: OpDef, inputs: Sequence[TensorType | None], attrs: Mapping[str, Any]
) -> tuple[TensorType, ...]:
    """Infer output types by running the reference implementation on meta tensors."""
    device = next((t.device for t in inputs if t is not None), "cpu")
    metas = [None if t is None else t.meta() for t in inputs]
    try:
        out = op.ref(*metas, **attrs)
    except Exception as e:  # noqa: BLE001 - re-raised with the op named
        shapes = [None if t is None else str(t) for t in inputs]
        raise GraphError(
            f"op '{op.name}': shape inference failed for inputs {shapes} and attributes "
            f"{dict(attrs)}: {e}"
        ) from e
    outs = out if isinstance(out, tuple | list) else (out,)
    return tuple(TensorType(tuple(o.shape), o.dtype, device) for o in outs)


def infer_by_fake(op: OpDef, inputs: Sequence[TensorType | None], attrs: Mapping[str, Any],
                  symbols: Symbols) -> tuple[TensorType, ...]:
    """Infer symbolic output types by running the reference on FakeTensors with SymInt
    sizes (:func:`accel.ir.shapes.infer_symbolic`)."""
    device = next((t.device for t in inputs if t is not None), "cpu")
    try:
        outs = infer_symbolic(op.ref, [None if t is None else (t.shape, t.dtype) for t in inputs],
                              attrs, symbols)
    except Exception as e:  # noqa: BLE001 - re-raised with the op named
        shapes = [None if t is None else str(t) for t in inputs]
        raise GraphError(
            f"op '{op.name}': symbolic shape inference failed for inputs {shapes} and "
            f"attributes {dict(attrs)}: {e}"
        ) from e
    return tuple(TensorType(shape, dtype, device) for shape, dtype in outs)


_REGISTRY: dict[str, OpDef] = {}


def register_op(op: OpDef) -> OpDef:
    """Add an op to the registry; names are unique."""
    if op.name in _REGISTRY:
        raise AccelValueError(f"op '{op.name}' is already registered")
    _REGISTRY[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    """The registered op called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise AccelValueError(
            f"unknown IR op '{name}'; registered ops: {', '.join(sorted(_REGISTRY))}"
        ) from None


def check_op_names(names: Iterable[str], where: str) -> frozenset[str]:
    """``names`` as a frozenset, after checking each is a registered op.

    For tables keyed by op name (lowerings, kernel kinds, patterns): a typo fails at import
    time with an error naming ``where`` the name was used and the closest registered ops.
    """
    names = frozenset(names)
    for name in sorted(names):
        if name not in _REGISTRY:
            close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise AccelValueError(f"{where}: unknown IR op '{name}'{hint} (registered ops are "
                                  "listed in docs/ops.md)")
    return names


def all_ops() -> dict[str, OpDef]:
    """Every registered op by name."""
    return dict(_REGISTRY)
