"""Calibration: run a graph on calibration batches with the reference executor while
observers record statistics of chosen values, and measure accuracy of lossy rewrites.

    stats = calibrate(graph, batches, {v: MinMaxObserver() for v in values})
    scale = stats[v].absmax() / 127

Observers: :class:`MinMaxObserver` (running min/max, per-channel |max| over the last dim),
:class:`HistogramObserver` (|x| histogram: percentile and entropy (KL) thresholds) and
:class:`SampleObserver` (a bounded sample of rows, for SQNR and Wanda norms) and
:class:`HessianObserver` (the streamed ``K x K`` Hessian of a linear's inputs, for GPTQ and
SparseGPT).
"""

from __future__ import annotations

import abc
import math
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence

import torch

from accel import env
from accel.errors import AccelValueError
from accel.ir.graph import Graph, Value
from accel.ir.interpreter import interpret
from accel.report import PassRecord


class Observer(abc.ABC):
    """Accumulates statistics of one value over calibration batches."""

    @abc.abstractmethod
    def update(self, t: torch.Tensor) -> None:
        """Observe one batch of the value."""


class MinMaxObserver(Observer):
    """Running min, max and per-channel |max| (channels = last dim)."""

    def __init__(self) -> None:
        self.min = math.inf
        self.max = -math.inf
        self.channel_absmax: torch.Tensor | None = None
        """max |x| per last-dim channel."""

    def update(self, t: torch.Tensor) -> None:
        """Observe one batch."""
        t = t.detach().float()
        self.min = min(self.min, t.min().item())
        self.max = max(self.max, t.max().item())
        ch = t.abs().reshape(-1, t.shape[-1]).amax(0) if t.dim() else t.abs().reshape(1)
        self.channel_absmax = ch if self.channel_absmax is None \
            else torch.maximum(self.channel_absmax, ch)

    def absmax(self) -> float:
        """max |x| seen."""
        return max(abs(self.min), abs(self.max))


class HistogramObserver(Observer):
    """Histogram of |x| (bins grow as the range grows) for percentile and entropy clipping."""

    def __init__(self, bins: int = 2048) -> None:
        self.bins = bins
        self.hist = torch.zeros(bins, dtype=torch.float64)
        self.upper = 0.0

    def update(self, t: torch.Tensor) -> None:
        """Observe one batch."""
        a = t.detach().float().abs().reshape(-1)
        top = a.max().item() if a.numel() else 0.0
        if top > self.upper:  # re-bin the old counts into the wider range
            if self.upper > 0:
                centers = (torch.arange(self.bins, dtype=torch.float64) + 0.5) * (
                    self.upper / self.bins)
                idx = (centers / top * self.bins).long().clamp_(max=self.bins - 1)
                self.hist = torch.zeros_like(self.hist).index_add_(0, idx, self.hist)
            self.upper = top
        if self.upper > 0:
            self.hist += torch.histc(a, self.bins, 0.0, self.upper).double()

    def percentile(self, q: float = 99.99) -> float:
        """The |x| threshold below which ``q`` percent of the observed values lie."""
        total = self.hist.sum()
        if total == 0:
            return 0.0
        cdf = self.hist.cumsum(0) / total
        i = int(torch.searchsorted(cdf, torch.tensor(q / 100, dtype=torch.float64)).item())
        return (min(i, self.bins - 1) + 1) * self.upper / self.bins

    def entropy_threshold(self, levels: int = 128) -> float:
        """The |x| clip minimising KL(P || Q) between the clipped and the quantized histogram."""
        hist = self.hist
        if hist.sum() == 0:
            return 0.0
        best, best_i = math.inf, self.bins
        for i in range(levels, self.bins + 1, levels):  # candidate clips: whole merged bins
            p = hist[:i].clone()
            p[-1] += hist[i:].sum()
            chunks = hist[:i].reshape(levels, i // levels)
            nonzero = (chunks > 0).sum(1, keepdim=True).clamp_min(1)
            q = torch.where(chunks > 0, chunks.sum(1, keepdim=True) / nonzero, 0.0).reshape(-1)
            p, q = p / p.sum(), q / q.sum().clamp_min(1e-12)
            mask = p > 0
            kl = (p[mask] * (p[mask] / q[mask].clamp_min(1e-12)).log()).sum().item()
            if kl < best:
                best, best_i = kl, i
        return best_i * self.upper / self.bins


class SampleObserver(Observer):
    """Keeps up to ``max_rows`` rows (last dim = features) and per-feature sum of squares."""

    def __init__(self, max_rows: int = 2048) -> None:
        self.max_rows = max_rows
        self.rows: list[torch.Tensor] = []
        self.count = 0
        self.sq_sum: torch.Tensor | None = None
        """Sum over all rows of x_j², per feature j (Wanda's ‖X_j‖²)."""

    def update(self, t: torch.Tensor) -> None:
        """Observe one batch."""
        rows = t.detach().float().reshape(-1, t.shape[-1])
        sq = rows.square().sum(0)
        self.sq_sum = sq if self.sq_sum is None else self.sq_sum + sq
        room = self.max_rows - self.count
        if room > 0:
            self.rows.append(rows[:room].clone())
            self.count += min(room, rows.shape[0])

    def sample(self) -> torch.Tensor:
        """The kept rows as one ``[rows, features]`` tensor."""
        return torch.cat(self.rows)


class HessianObserver(Observer):
    """Streams ``H = 2/n · Σ xᵀx`` over the rows ``x`` (last dim ``K``) of a linear's input.

    This is the Hessian of the layer's squared output error ``‖XWᵀ − XŴᵀ‖²`` with respect to
    each row of the weight (GPTQ, arXiv 2210.17323, eq. 1). Memory is one ``[K, K]``
    accumulator whatever the number of batches: each batch is folded in as a running mean
    (``H ← H·n/(n+m) + 2/(n+m)·XᵀX``), in ``dtype`` (float64 by default; float32 halves the
    memory of very wide layers).
    """

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        self.dtype = dtype
        self.h: torch.Tensor | None = None
        """The running ``[K, K]`` Hessian (``None`` before the first batch)."""
        self.rows = 0
        """Rows folded in so far (``n``)."""

    def update(self, t: torch.Tensor) -> None:
        """Fold one batch of rows into the running Hessian."""
        x = t.detach().reshape(-1, t.shape[-1]).to(self.dtype)
        m = x.shape[0]
        if m == 0:
            return
        if self.h is None:
            self.h = torch.zeros(x.shape[1], x.shape[1], dtype=self.dtype)
        total = self.rows + m
        self.h.mul_(self.rows / total).addmm_(x.t(), x, alpha=2.0 / total)
        self.rows = total

    def hessian(self) -> torch.Tensor:
        """The ``[K, K]`` Hessian seen so far."""
        if self.h is None:
            raise AccelValueError("HessianObserver saw no rows; check the calibration data")
        return self.h


class CrossHessianObserver(Observer):
    """Streams, for one linear input seen in two models on the same batches, the Hessian
    ``H = 2/n · X̂ᵀX̂`` of the compressed model's rows ``X̂`` and the cross term
    ``C = 2/n · XᵀX̂`` with the reference (float) model's rows ``X``.

    With them a layer can aim at the float model's output from its own, already perturbed,
    inputs: ``‖XWᵀ − X̂Ŵᵀ‖² = ‖X̂(Ŵ − W′)ᵀ‖² + const`` where ``W′ = W·C·H⁻¹`` is the least
    squares correction of ``W`` (see :func:`accel.passes.common.linears.float_target_weight`).
    Feed a batch's reference rows with :meth:`update_reference` before its own rows with
    :meth:`update` (what :func:`calibrate_paired` does).
    """

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        self.own = HessianObserver(dtype)
        """``H``, the compressed model's Hessian."""
        self.c: torch.Tensor | None = None
        """The running ``[K, K]`` cross term ``C`` (``None`` before the first batch)."""
        self._ref: torch.Tensor | None = None

    def update_reference(self, t: torch.Tensor) -> None:
        """The reference model's rows of the next batch."""
        self._ref = t.detach().reshape(-1, t.shape[-1]).to(self.own.dtype)

    def update(self, t: torch.Tensor) -> None:
        """The compressed model's rows of the batch whose reference rows came last."""
        x_hat = t.detach().reshape(-1, t.shape[-1]).to(self.own.dtype)
        x, self._ref = self._ref, None
        if x is None or x.shape != x_hat.shape:
            raise AccelValueError("CrossHessianObserver: each batch needs the reference rows "
                                  "first, shaped as the model's own")
        m = x.shape[0]
        if m == 0:
            return
        n = self.own.rows
        if self.c is None:
            self.c = torch.zeros(x.shape[1], x.shape[1], dtype=self.own.dtype)
        self.c.mul_(n / (n + m)).addmm_(x.t(), x_hat, alpha=2.0 / (n + m))
        self.own.update(x_hat)

    def hessian(self) -> torch.Tensor:
        """``H`` seen so far."""
        return self.own.hessian()

    def cross(self) -> torch.Tensor:
        """``C`` seen so far."""
        if self.c is None:
            raise AccelValueError("CrossHessianObserver saw no rows; check the calibration data")
        return self.c


def progress(iterable: Iterable, total: int | None, desc: str) -> Iterable:
    """``tqdm`` progress bar on a TTY (``ACCEL_PROGRESS=0`` disables it)."""
    enabled = env.progress() and sys.stderr.isatty()
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def real_rows(t: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    """``t[real]`` (``[T, ...]``) when ``t``'s leading dims are the bool token mask ``real``'s
    ``[B, S]`` and ``t`` has a feature dim after them; else ``t`` unchanged."""
    if real is not None and t.dim() >= 3 and t.shape[:2] == real.shape:
        return t[real]
    return t


def calibrate(
    graph: Graph,
    batches: Sequence[tuple[torch.Tensor, ...]],
    observers: Mapping[Value, Observer | Sequence[Observer]],
    desc: str = "calibrating",
    token_mask: Value | None = None,
) -> Mapping[Value, Observer | Sequence[Observer]]:
    """Run ``graph`` on every batch; each observed value's observers see each batch.

    ``token_mask``: a rank-2 graph input ``[B, S]`` that marks real tokens (nonzero) and
    padding (0), such as a text encoder's attention mask (see
    :func:`accel.passes.common.padding.find_padding_mask`). An observed value whose leading
    dims are that batch's ``[B, S]`` is then seen as its real-token rows only,
    ``t[mask != 0]`` (``[T, ...]``): padded positions carry activations no output reads, and
    in a Hessian or an activation norm they would weigh as much as real tokens. Other
    observed values (rank < 3, or other leading dims) are seen whole.
    """
    if not batches:
        raise AccelValueError("calibration needs at least one batch; pass calibration=[...] "
                              "to accel.compile")
    watch = {v: (list(o) if isinstance(o, Sequence) else [o]) for v, o in observers.items()}
    where = graph.inputs.index(token_mask) if token_mask is not None else None
    real: torch.Tensor | None = None

    def observe(value: Value, t: torch.Tensor) -> None:
        obs = watch.get(value, ())
        if obs:
            t = real_rows(t, real)
        for o in obs:
            o.update(t)

    for batch in progress(batches, len(batches), desc):
        real = None if where is None else batch[where] != 0
        for v, t in zip(graph.inputs, batch, strict=True):
            observe(v, t)
        interpret(graph, batch, observe)
    real = None
    for v in watch:
        if v in graph.constants:
            observe(v, graph.constants[v])
    return observers


def calibrate_paired(reference: Graph, graph: Graph, batches: Sequence[tuple[torch.Tensor, ...]],
                     value: Value, observer: CrossHessianObserver, desc: str = "calibrating",
                     token_mask: Value | None = None) -> CrossHessianObserver:
    """Run ``reference`` and ``graph`` (the same inputs, e.g. a model and its partly
    compressed copy) on every batch; ``observer`` sees ``value`` (a value of both graphs)
    from each, paired batch by batch. ``token_mask`` as in :func:`calibrate` (an input of
    ``reference``, at the same position in ``graph``'s inputs)."""
    if not batches:
        raise AccelValueError("calibration needs at least one batch; pass calibration=[...] "
                              "to accel.compile")
    where = reference.inputs.index(token_mask) if token_mask is not None else None
    for batch in progress(batches, len(batches), desc):
        real = None if where is None else batch[where] != 0
        for g, feed in ((reference, observer.update_reference), (graph, observer.update)):
            def observe(v: Value, t: torch.Tensor, feed=feed, real=real) -> None:  # noqa: ANN001
                if v is value:
                    feed(real_rows(t, real))
            interpret(g, batch, observe)
    return observer


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio ``10·log10(‖y‖² / ‖y − ŷ‖²)`` in dB."""
    ref, err = reference.double(), (reference.double() - approx.double())
    noise = err.square().sum().item()
    signal = ref.square().sum().item()
    if noise == 0:
        return math.inf
    return 10 * math.log10(max(signal, 1e-30) / noise)


E2E_COSINE_WARN = 0.95
"""End-to-end output cosine (vs the unmodified model, on the calibration data) below which
the accuracy report warns even when no layer's SQNR collapsed. Per-layer SQNR measures each
layer on float inputs; errors compound through the layers after it, so a sound-looking layer
table can hide a broken model. Measured on MiniLM (benchmarks/quant.py; outputs compared at
real tokens): 2:4 Wanda keeps every layer above 8 dB (sparsify's collapse threshold is 5 dB)
while the output cosine is 0.81 and the worst pooled sentence embedding 0.70; symmetric RTN
int4 (groups of 128) keeps every layer above 15 dB at output cosine 0.947; int8-weight-only
and GPTQ int4 stay above 0.99."""

E2E_ARGMAX_WARN = 0.95
"""Argmax agreement (fraction of rows of a 2-D first output whose argmax is unchanged)
below which the report warns, under the same condition: 5% of a classifier's
predictions changed."""


def hidden_accuracy_loss(accuracy: Mapping[str, float], records: Sequence[PassRecord]
                         ) -> str | None:
    """The warning to give when end-to-end agreement is below :data:`E2E_COSINE_WARN` or
    :data:`E2E_ARGMAX_WARN` although every changed lossy pass that measured its layers
    reported no collapsed layer (``collapsed_layers == 0``), else ``None``."""
    lossy = [r for r in records if r.lossy and r.changed]
    measured = [r for r in lossy if "collapsed_layers" in r.metrics]
    if not measured or any(r.metrics["collapsed_layers"] for r in measured):
        return None
    low = []
    if accuracy.get("cosine", 1.0) < E2E_COSINE_WARN:
        low.append(f"output cosine {accuracy['cosine']:.4f} < {E2E_COSINE_WARN}")
    if accuracy.get("argmax_agreement", 1.0) < E2E_ARGMAX_WARN:
        low.append(f"argmax agreement {accuracy['argmax_agreement']:.3f} < {E2E_ARGMAX_WARN}")
    if not low:
        return None
    floor = min(r.metrics.get("min_layer_sqnr_db", math.inf) for r in measured)
    names = ", ".join(dict.fromkeys(r.name for r in measured))
    return (f"end-to-end {' and '.join(low)} vs the unmodified model, although no layer of "
            f"{names} fell below its SQNR collapse threshold (worst layer {floor:.1f} dB): "
            "per-layer errors compound; exclude layers, use a milder mode, or an "
            "error-compensating method (quantize{method=gptq}, sparsify{method=sparsegpt}) "
            "if not already")


def lossy_accuracy(reference: Graph, modified: Graph, records: Sequence[PassRecord],
                   batches: Sequence[tuple[torch.Tensor, ...]],
                   token_mask: Value | None = None) -> dict[str, float]:
    """End-to-end accuracy of a pipeline's output when a lossy pass changed the graph, else {}
    (real tokens only with ``token_mask``, as :func:`output_accuracy`).

    Warns (and notes it in the last lossy pass's record) when :func:`hidden_accuracy_loss`
    finds end-to-end agreement low while every layer's SQNR looked fine.
    """
    lossy = [r for r in records if r.lossy and r.changed]
    if not lossy:
        return {}
    accuracy = output_accuracy(reference, modified, batches, token_mask)
    message = hidden_accuracy_loss(accuracy, records)
    if message is not None:
        lossy[-1].notes.append("warning: " + message)
        warnings.warn("accel: " + message, stacklevel=2)
    return accuracy


def output_accuracy(reference: Graph, modified: Graph,
                    batches: Sequence[tuple[torch.Tensor, ...]],
                    token_mask: Value | None = None) -> dict[str, float]:
    """End-to-end difference of ``modified`` vs ``reference`` on ``batches`` (float outputs).

    ``token_mask`` (an input of ``reference``, the same position in ``modified``'s inputs,
    see :func:`calibrate`): outputs whose leading dims are the batch's ``[B, S]`` are
    compared at real tokens only; what a model computes at padded positions is read by
    nobody, and a compressed model calibrated on real tokens is free to differ there.

    SQNR, cosine and max |diff| over every float output; when the first float output is 2-D
    ([batch, features], features > 1), also ``argmax_agreement``: the fraction of rows whose
    argmax is unchanged. For classifier logits that is the label-free stand-in for a top-1
    drop; for other 2-D outputs (embeddings) it carries no meaning.
    """
    sig = noise = dot = n_ref = n_mod = 0.0
    max_abs = 0.0
    agree = rows = 0
    where = reference.inputs.index(token_mask) if token_mask is not None else None
    with torch.no_grad():
        for batch in progress(batches, len(batches), "accuracy"):
            pairs = [(r, m) for r, m in zip(interpret(reference, batch),
                                            interpret(modified, batch), strict=True)
                     if r.is_floating_point()]
            first_2d = bool(pairs) and pairs[0][0].dim() == 2 and pairs[0][0].shape[-1] > 1
            if where is not None:
                real = batch[where] != 0
                pairs = [(real_rows(r, real), real_rows(m, real)) for r, m in pairs]
            for r, m in pairs:
                r64, m64 = r.double().reshape(-1), m.double().reshape(-1)
                sig += r64.square().sum().item()
                noise += (r64 - m64).square().sum().item()
                dot += (r64 * m64).sum().item()
                n_ref += r64.square().sum().item()
                n_mod += m64.square().sum().item()
                if r64.numel():
                    max_abs = max(max_abs, (r64 - m64).abs().max().item())
            if first_2d:
                r, m = pairs[0]
                agree += int((r.argmax(-1) == m.argmax(-1)).sum())
                rows += r.shape[0]
    out = {
        "output_sqnr_db": math.inf if noise == 0 else 10 * math.log10(max(sig, 1e-30) / noise),
        "max_abs_diff": max_abs,
        "cosine": dot / max(math.sqrt(n_ref * n_mod), 1e-30),
    }
    if rows:
        out["argmax_agreement"] = agree / rows
    return out


def rebatch(batches: Sequence[tuple[torch.Tensor, ...]], example: tuple[torch.Tensor, ...]
            ) -> list[tuple[torch.Tensor, ...]]:
    """Calibration data regrouped into batches of the compiled batch size (dim 0).

    Captured graphs have static shapes, so calibration must run at the batch size the
    model was compiled for. The samples are concatenated and cut into full batches (the
    remainder is dropped); fewer samples than one batch are repeated to fill it.
    """
    size = example[0].shape[0] if example and example[0].dim() else 0
    if not batches or size == 0 or all(b[0].shape[0] == size for b in batches):
        return list(batches)
    columns = [torch.cat([b[i] for b in batches]) for i in range(len(batches[0]))]
    total = columns[0].shape[0]
    if total < size:
        reps = -(-size // total)
        columns = [c.repeat(reps, *([1] * (c.dim() - 1)))[:size] for c in columns]
        total = size
    return [tuple(c[i:i + size] for c in columns) for i in range(0, total - size + 1, size)]
