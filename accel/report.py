"""What a compilation did: one row per pass, lowering notes, and everything that was not
compiled as asked (fallbacks, graph breaks, skipped passes, recompilations).

Nothing is silent: ``Report.summary()`` says plainly when any of those happened.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PassRecord:
    """One pass's effect on the graph."""

    name: str
    """Pass name as in the pipeline."""
    options: dict[str, Any] = field(default_factory=dict)
    """Options the pass ran with."""
    nodes_before: int = 0
    """Node count before."""
    nodes_after: int = 0
    """Node count after."""
    flops_before: int = 0
    """FLOPs of one run before."""
    flops_after: int = 0
    """FLOPs of one run after."""
    params_before: int = 0
    """Constant elements before."""
    params_after: int = 0
    """Constant elements after."""
    seconds: float = 0.0
    """Wall time of the pass."""
    changed: bool = False
    """Whether the pass changed the graph."""
    notes: list[str] = field(default_factory=list)
    """What the pass said (what it did, why it did not apply)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Measured costs of a lossy pass (SQNR, accuracy difference...)."""
    lossy: bool = False
    """Whether the pass may change numerics beyond floating-point rounding."""
    skipped: bool = False
    """Whether the pass found nothing it could apply to (see ``notes`` for why)."""
    preset: str | None = None
    """The preset that brought this pass in; ``None`` if the pipeline named it."""


@dataclass
class Report:
    """Everything ``accel.compile`` did, printable as a table."""

    model: str = "model"
    """Name of the compiled model."""
    pipeline: str = ""
    """The pipeline spec, presets expanded."""
    target: str = ""
    """The lowering target."""
    passes: list[PassRecord] = field(default_factory=list)
    """One record per pass run."""
    lowering: list[str] = field(default_factory=list)
    """Notes from lowering for the target (kernel groups, executor choice)."""
    executor: str = ""
    """The executor the target lowered to (``aten``, ``onnxruntime``, ``triton``)."""
    fallbacks: list[str] = field(default_factory=list)
    """Nodes run through the ATen fallback, with the reason."""
    graph_breaks: int = 0
    """Graph breaks TorchDynamo made (torch.compile path)."""
    eager_fallbacks: list[str] = field(default_factory=list)
    """Graphs that ran eagerly instead of compiled, with the reason."""
    recompilations: int = 0
    """Recompilations for new input shapes."""
    compile_seconds: float = 0.0
    """Wall time of the first compilation."""
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds of the first compilation by stage: ``capture``, ``passes``, ``lowering``,
    ``choice`` (measuring executors), ``accuracy`` (of lossy passes), or ``cache`` (loading
    a compiled entry)."""
    host: str = ""
    """The host it was compiled for (:meth:`accel.host.HostProfile.describe`)."""
    accuracy: dict[str, float] = field(default_factory=dict)
    """End-to-end accuracy measures of lossy passes."""

    @property
    def skipped(self) -> list[str]:
        """Passes named in the pipeline that could not apply (e.g. no transformer blocks).

        A pass brought in by a preset that finds nothing to do (``fold-bn`` on a model
        without BatchNorm) is normal and is not counted; its row still says why.
        """
        return [p.name for p in self.passes if p.skipped and p.preset is None]

    def summary(self) -> str:
        """One line: what, if anything, did not go as compiled code."""
        parts = []
        if self.fallbacks:
            parts.append(f"{len(self.fallbacks)} aten fallback(s)")
        if self.graph_breaks:
            parts.append(f"{self.graph_breaks} graph break(s)")
        if self.eager_fallbacks:
            parts.append(f"{len(self.eager_fallbacks)} graph(s) run eagerly")
        if self.skipped:
            parts.append(f"{len(self.skipped)} pass(es) skipped ({', '.join(self.skipped)})")
        if self.recompilations:
            parts.append(f"{self.recompilations} recompilation(s)")
        if not parts:
            return "summary: every node compiled; no fallbacks, graph breaks, skipped passes " \
                   "or recompilations"
        return "summary: " + "; ".join(parts)

    def table(self) -> str:
        """The per-pass table."""
        head = f"{'pass':<24} {'nodes':>13} {'MFLOPs':>21} {'params':>21} {'ms':>8}  notes"
        rows = [head, "-" * len(head)]
        for p in self.passes:
            nodes = f"{p.nodes_before}->{p.nodes_after}"
            flops = f"{p.flops_before / 1e6:,.1f}->{p.flops_after / 1e6:,.1f}"
            params = f"{p.params_before:,}->{p.params_after:,}"
            note = "; ".join(p.notes) if p.notes else ("" if p.changed else "no change")
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in p.metrics.items())
            note = "; ".join(x for x in (note, metrics) if x)
            rows.append(f"{p.name:<24} {nodes:>13} {flops:>21} {params:>21} "
                        f"{p.seconds * 1e3:>8.1f}  {note}")
        return "\n".join(rows)

    def __str__(self) -> str:
        lines = [f"accel report: {self.model}  (target={self.target}, "
                 f"compile {self.compile_seconds:.2f}s)"]
        if self.host:
            lines.append(f"host: {self.host}")
        if self.stages:
            lines.append("compile stages: " + ", ".join(f"{k} {v:.2f}s"
                                                       for k, v in self.stages.items()))
        lines.append(self.table())
        lines += [f"lowering: {n}" for n in self.lowering]
        lines += [f"fallback: {f}" for f in self.fallbacks]
        lines += [f"eager: {f}" for f in self.eager_fallbacks]
        lines += [f"accuracy: {k} = {v:.6g}" for k, v in self.accuracy.items()]
        lines.append(self.summary())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (for JSON)."""
        d = asdict(self)
        d["skipped"] = self.skipped
        d["summary"] = self.summary()
        return d
