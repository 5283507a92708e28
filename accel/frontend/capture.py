"""Capture a model into the IR with ``torch.export`` (parameters become constants)."""

from __future__ import annotations

import inspect
import operator
import threading
import traceback
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
from torch.export.graph_signature import InputKind, OutputKind

from accel.errors import AccelTypeError, CaptureError
from accel.frontend.dynamic import DynamicShapes, name_symbols, normalize_spec, widen_examples
from accel.frontend.importer import import_fx
from accel.ir.graph import Graph

_EXPORT_LOCK = threading.RLock()
"""torch.export is not thread-safe (global tracing state): captures run one at a time."""


def as_module(model: Any) -> torch.nn.Module:
    """``model`` as an ``nn.Module``; plain callables are wrapped."""
    if isinstance(model, torch.nn.Module):
        return model
    if callable(model):
        return _CallableModule(model)
    raise AccelTypeError(
        f"accel.compile expects an nn.Module or a callable, got {type(model).__name__}; "
        "pass the model object itself (e.g. accel.compile(model, (x,)))"
    )


class _CallableModule(torch.nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def check_example_inputs(example_inputs: Any) -> tuple[torch.Tensor, ...]:
    """Normalise example inputs to a tuple of tensors, with a clear error otherwise."""
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, list | tuple):
        raise AccelTypeError(
            f"example_inputs must be a tensor or a tuple of tensors, got "
            f"{type(example_inputs).__name__}"
        )
    for i, t in enumerate(example_inputs):
        if not isinstance(t, torch.Tensor):
            raise AccelTypeError(
                f"example_inputs[{i}] is a {type(t).__name__}; accel compiles tensor inputs "
                "only (bind other arguments with functools.partial or a wrapper module)"
            )
    return tuple(example_inputs)


def capture(model: Any, example_inputs: Sequence[torch.Tensor], name: str | None = None,
            dynamic_shapes: DynamicShapes = None) -> Graph:
    """Export ``model`` on ``example_inputs`` and import it as an IR graph.

    ``dynamic_shapes`` (``"auto"`` or torch.export's specification) makes dims symbolic;
    the graph's ``symbols`` then hold their ranges and example values.
    """
    module = as_module(model)
    inputs = check_example_inputs(example_inputs)
    name = name or type(getattr(module, "fn", module)).__name__
    spec = normalize_spec(dynamic_shapes, inputs)
    inputs = widen_examples(inputs, spec)
    ep = _export_program(module, inputs, name, _for_signature(module, spec))
    bindings: dict[str, tuple[str, Any]] = {}
    user = iter(inputs)
    state = {**ep.state_dict, **ep.constants}
    placeholders = {n.name: n for n in ep.graph_module.graph.nodes if n.op == "placeholder"}
    vals = []
    for s in ep.graph_signature.input_specs:
        placeholder = s.arg.name
        if s.kind == InputKind.USER_INPUT:
            bindings[placeholder] = ("input", next(user))
            vals.append(placeholders[placeholder].meta.get("val"))
        elif s.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            bindings[placeholder] = ("const", state[s.target], s.target)
        else:
            raise CaptureError(f"{name}: unsupported exported input kind {s.kind}")
    rename, symbols = (name_symbols(vals, inputs, spec, ep.range_constraints) if spec is not None
                       else ({}, {}))
    return import_fx(ep.graph_module, bindings, _ident(name), ep.call_spec.out_spec,
                     rename=rename, symbols=symbols, mutations=input_mutations(ep, bindings, name))


def capture_fx(gm: fx.GraphModule, example_inputs: Sequence[Any], frozen: Sequence[bool],
               name: str = "graph", dynamic_shapes: Any = None) -> Graph:
    """Capture a torch-level fx graph (e.g. from TorchDynamo) with some inputs frozen.

    ``frozen[i]`` marks ``example_inputs[i]`` as a weight to freeze into a constant;
    ``dynamic_shapes`` (one entry per input, torch.export's form) makes dims symbolic.
    """
    spec = tuple(dynamic_shapes) if dynamic_shapes is not None else None
    ep = _export_program(gm, tuple(example_inputs), name, _for_signature(gm, spec))
    bindings: dict[str, tuple[str, Any]] = {}
    user = iter(zip(example_inputs, frozen, strict=True))
    state = {**ep.state_dict, **ep.constants}
    for spec in ep.graph_signature.input_specs:
        placeholder = spec.arg.name
        if spec.kind == InputKind.USER_INPUT:
            value, freeze = next(user)
            if not isinstance(value, torch.Tensor):
                bindings[placeholder] = ("value", value)
            elif freeze:
                bindings[placeholder] = ("const", value)
            else:
                bindings[placeholder] = ("input", value)
        else:
            bindings[placeholder] = ("const", state[spec.target], spec.target)
    mutations = input_mutations(ep, bindings, name)
    if dynamic_shapes is None:
        return import_fx(ep.graph_module, bindings, _ident(name), ep.call_spec.out_spec,
                         mutations=mutations)
    placeholders = {n.name: n for n in ep.graph_module.graph.nodes if n.op == "placeholder"}
    users = [(s.arg.name, v) for s, v in zip(
        [s for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT],
        example_inputs, strict=True)]
    tensors = [(placeholders[p].meta.get("val"), v) for p, v in users
               if isinstance(v, torch.Tensor)]
    spec = [d for d, v in zip(dynamic_shapes, example_inputs, strict=True)
            if isinstance(v, torch.Tensor)]
    rename, symbols = name_symbols([t for t, _ in tensors], [v for _, v in tensors], spec,
                                   ep.range_constraints)
    return import_fx(ep.graph_module, bindings, _ident(name), ep.call_spec.out_spec,
                     rename=rename, symbols=symbols, mutations=mutations)


def input_mutations(ep: torch.export.ExportedProgram, bindings: dict[str, tuple[str, Any]],
                    name: str) -> dict[int, str]:
    """The in-place updates of runtime inputs: for each output of the functional graph that
    is the new value of an input (``x.add_(1)``, ``x.exponential_()``, a KV cache written
    with ``index_copy_``), its position among the graph's outputs -> the input's placeholder.
    The compiled model copies these values back into the caller's tensors after each call
    (as AOTAutograd does). An update of a tensor frozen into a constant (a weight or a
    buffer torch.compile handed over as one) is refused: a constant holds no state."""
    out: dict[int, str] = {}
    for k, s in enumerate(ep.graph_signature.output_specs):
        if s.kind is not OutputKind.USER_INPUT_MUTATION:
            continue
        kind = bindings.get(s.target, ("input",))[0]
        if kind != "input":
            raise CaptureError(
                f"could not capture {name}: it updates the tensor '{s.target}' in place, which "
                "accel freezes into a constant (a parameter or buffer): a constant cannot hold "
                f"state between calls.\n{_UPDATE_HINT}")
        out[k] = s.target
    return out


def _for_signature(module: torch.nn.Module, spec: Any) -> Any:
    """torch.export wants one spec entry per forward parameter: ``forward(self, *args)``
    takes all inputs as one (a tuple)."""
    if not isinstance(spec, tuple):
        return spec
    params = list(inspect.signature(module.forward).parameters.values())
    if params and params[0].kind is inspect.Parameter.VAR_POSITIONAL:
        return (spec,)
    return spec


def _export_program(module: torch.nn.Module, inputs: tuple[Any, ...], name: str,
                    dynamic_shapes: Any = None) -> torch.export.ExportedProgram:
    """torch.export ``module`` (functionalised if it mutates), failures explained."""
    try:
        with _EXPORT_LOCK, torch.no_grad():
            ep = torch.export.export(module, inputs, strict=False,
                                     dynamic_shapes=dynamic_shapes)
    except Exception as e:  # noqa: BLE001 - re-raised with the failing source line
        raise CaptureError(_explain_export_failure(name, e)) from e
    hidden = _hidden_updates(ep.graph_module)
    if hidden:  # made explicit first, so that functionalisation sees the updates
        with _EXPORT_LOCK:
            ep = ep.run_decompositions(hidden)
    if _has_mutation(ep.graph_module):
        try:
            with _EXPORT_LOCK:
                ep = ep.run_decompositions({})
        except Exception as e:  # noqa: BLE001 - e.g. "Constant c is mutated": re-raised
            first = (str(e).strip().splitlines() or [""])[0]
            raise CaptureError(f"could not capture {name}: it updates a tensor in place that "
                               f"torch.export cannot make functional ({type(e).__name__}: "
                               f"{first})\n{_UPDATE_HINT}") from e
    _check_no_state_update(ep, name)
    ep = _decompose_unhandled(ep)
    _check_no_state_update(ep, name)  # a decomposition may reveal one (training batch norm)
    return ep


_DECOMPOSE_ROUNDS = 3


def _decompose_unhandled(ep: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Decompose the ops accel has no IR lowering for but torch can express in simpler ATen
    ops (``divide``, ``square``, ``logsumexp``, ``glu``, ``flip``...): their parts may lower,
    so they need not run as opaque fallbacks (which no executor but aten can run). Ops accel
    lowers are left whole: the passes pattern-match them. Ops whose decomposition still
    does not lower stay fallbacks, as before."""
    from torch._decomp import decomposition_table

    from accel.frontend import aten_map

    tried: set[Any] = set()
    for _ in range(_DECOMPOSE_ROUNDS):
        table = {}
        for node in ep.graph_module.graph.nodes:
            op = node.target
            if node.op != "call_function" or not isinstance(op, torch._ops.OpOverload) \
                    or op in tried or aten_map.lookup(op) is not None \
                    or torch.Tag.nondeterministic_seeded in op.tags:
                continue
            decomp = decomposition_table.get(op)
            if decomp is None and torch._C._dispatch_has_kernel_for_dispatch_key(
                    op.name(), "CompositeImplicitAutograd"):
                decomp = op.decompose
            if decomp is not None:
                table[op] = decomp
        if not table:
            break
        tried |= set(table)
        try:
            with _EXPORT_LOCK:
                ep = ep.run_decompositions(table)
        except Exception:  # noqa: BLE001 - the ops then run whole, as fallbacks
            break
    return ep


_STATE_UPDATES = {OutputKind.BUFFER_MUTATION: "buffer", OutputKind.PARAMETER_MUTATION: "parameter"}


def _check_no_state_update(ep: torch.export.ExportedProgram, name: str) -> None:
    """Refuse a model that writes into one of its own buffers or parameters in place
    (``self.calls.add_(1)``, a running-statistics update): accel freezes them into
    constants, so the write would be lost. Updates of inputs are supported
    (:func:`input_mutations`): pass the state as an input to have it updated."""
    updates = [s for s in ep.graph_signature.output_specs if s.kind in _STATE_UPDATES]
    if not updates:
        return
    nodes = {n.name: n for n in ep.graph_module.graph.nodes}
    what = []
    for s in updates:
        node = nodes.get(getattr(s.arg, "name", ""))
        while node is not None and node.target is operator.getitem:  # an output of a multi-
            node = node.args[0]  # output op (e.g. a batch norm's running statistics)
        op = f" (by {node.target})" if node is not None and node.op == "call_function" else ""
        what.append(f"{_STATE_UPDATES[s.kind]} '{s.target}'{op}")
    hint = _UPDATE_HINT
    if any("running_" in s.target or "num_batches_tracked" in s.target for s in updates):
        hint = ("A BatchNorm in training mode updates its running statistics: call model.eval() "
                "before compiling (accel compiles inference graphs).")
    raise CaptureError(
        f"could not capture {name}: it updates {', '.join(what)} in place; accel freezes "
        f"parameters and buffers into constants, in which that update would be lost.\n{hint}")


_UPDATE_HINT = ("Pass the tensor as an input instead (accel copies in-place updates of inputs "
                "back into the caller's tensors), clone it before the in-place op "
                "(x = x.clone()), or return the new value as an output; "
                "torch.compile(model, backend='accel') runs such code eagerly.")


def _ident(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name) or "graph"


def _normalize(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, weight: Any, bias: Any,
               eps: float) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.dim() - 2)
    y = (x - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def _update_stats(running_mean: Any, running_var: Any, mean: torch.Tensor, var: torch.Tensor,
                  n: int, momentum: float) -> None:
    """Eager's running-statistics update: an exponential average with the batch mean and
    the unbiased batch variance (``n`` values per statistic), per channel."""
    if running_mean is not None:
        running_mean.copy_((1 - momentum) * running_mean + momentum * mean)
    if running_var is not None:
        running_var.copy_((1 - momentum) * running_var
                          + momentum * (var * (n / (n - 1)) if n > 1 else var))


def _instance_norm(x: torch.Tensor, weight: Any, bias: Any, running_mean: Any, running_var: Any,
                   use_input_stats: bool, momentum: float, eps: float,
                   cudnn_enabled: bool = False) -> torch.Tensor:
    """``aten.instance_norm`` with its running-statistics update as explicit in-place copies.
    Eager runs a training batch norm over [1, N*C, ...] and averages the per-sample
    statistics back into the caller's running_mean / running_var."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    if not use_input_stats:
        return _normalize(x, running_mean.reshape(shape), running_var.reshape(shape), weight,
                          bias, eps)
    dims = list(range(2, x.dim()))
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, keepdim=True, unbiased=False)
    _update_stats(running_mean, running_var, mean.flatten(1).mean(0), var.flatten(1).mean(0),
                  x[0, 0].numel(), momentum)
    return _normalize(x, mean, var, weight, bias, eps)


def _batch_norm(x: torch.Tensor, weight: Any, bias: Any, running_mean: Any, running_var: Any,
                training: bool, momentum: float, eps: float,
                cudnn_enabled: bool = False) -> torch.Tensor:
    """``aten.batch_norm`` with its training-mode running-statistics update as explicit
    in-place copies."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    if not training:
        return _normalize(x, running_mean.reshape(shape), running_var.reshape(shape), weight,
                          bias, eps)
    dims = [0, *range(2, x.dim())]
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, keepdim=True, unbiased=False)
    _update_stats(running_mean, running_var, mean.flatten(), var.flatten(),
                  x.numel() // x.shape[1], momentum)
    return _normalize(x, mean, var, weight, bias, eps)


def _updates_stats(node: fx.Node) -> bool:
    """Whether an instance_norm / batch_norm node uses the input's statistics and has
    running ones to update (args 3-5: running_mean, running_var, use_input_stats/training)."""
    schema = node.target._schema.arguments  # noqa: SLF001 - the op's own argument names
    args = [node.args[i] if len(node.args) > i else node.kwargs.get(schema[i].name)
            for i in (3, 4, 5)]
    return bool(args[2]) and (args[0] is not None or args[1] is not None)


_HIDDEN_UPDATES = {torch.ops.aten.instance_norm.default: _instance_norm,
                   torch.ops.aten.batch_norm.default: _batch_norm}
"""Ops whose schema says they are functional although eager updates some arguments in place
(the running statistics of an instance or batch norm that uses the input's): op -> a
decomposition that writes the update out as copies, which functionalisation turns into
input mutations (an opaque fallback would lose it on every path but aten)."""


def _hidden_updates(gm: fx.GraphModule) -> dict[Any, Any]:
    """The decompositions :data:`_HIDDEN_UPDATES` needs for the nodes of ``gm``."""
    return {n.target: _HIDDEN_UPDATES[n.target] for n in gm.graph.nodes
            if n.op == "call_function" and n.target in _HIDDEN_UPDATES and _updates_stats(n)}


def _has_mutation(gm: fx.GraphModule) -> bool:
    for n in gm.graph.nodes:
        if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload):  # noqa: SLF001
            if n.target._schema.is_mutable:  # noqa: SLF001
                return True
    return False


def _explain_export_failure(name: str, e: Exception) -> str:
    where = _user_frame(e)
    text = str(e).strip().splitlines()
    first = text[0] if text else type(e).__name__
    data_dependent = any(k in str(e) for k in ("data-dependent", "data dependent",
                                               "GuardOnDataDependent", "Could not guard"))
    hint = (
        "The model branches on tensor values (data-dependent control flow). Rewrite the branch "
        "with torch.where or torch.cond, or use torch.compile(model, backend='accel'), which "
        "splits the graph there and compiles the pieces."
        if data_dependent else
        "Check that the model runs eagerly on these inputs; torch.compile(model, "
        "backend='accel') tolerates more Python than accel.compile does."
    )
    loc = f" at {where}" if where else ""
    return f"could not capture {name}{loc}: {type(e).__name__}: {first}\n{hint}"


def _user_frame(e: BaseException) -> str | None:
    """The innermost traceback frame outside torch and accel (the user's model code)."""
    best = None
    seen: set[int] = set()
    exc: BaseException | None = e
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for fs in traceback.extract_tb(exc.__traceback__):
            f = fs.filename.replace("\\", "/")
            if "/torch/" in f or "/accel/" in f or "/site-packages/" in f or f.startswith("<"):
                continue
            best = f"{fs.filename}:{fs.lineno} `{(fs.line or '').strip()}`"
        exc = exc.__cause__ or exc.__context__
    return best
