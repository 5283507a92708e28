"""Pipelines: spec parsing, presets, errors, per-pass report, dumps, debug verification."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Literal

import pytest
import torch

import accel
from accel.errors import AccelValueError, PassError
from accel.ir.graph import Graph, Node, Value
from accel.passes import (
    PRESETS,
    PassContext,
    PassStep,
    format_pipeline,
    parse_pipeline,
    register_pass,
    run_pipeline,
)
from accel.report import Report


@register_pass("test-options")
def _test_options(graph: Graph, ctx: PassContext, *, r: int = 8, ratio: float = 0.5,
                  layers: list[int] = [], mode: Literal["a", "b"] = "a",  # noqa: B006
                  flag: bool = False, name: str | None = None) -> Graph:
    """A pass that only records its options (for parser tests)."""
    ctx.note(f"r={r} ratio={ratio} layers={layers} mode={mode} flag={flag} name={name}")
    return graph


@register_pass("test-break-types")
def _test_break_types(graph: Graph, ctx: PassContext) -> Graph:
    """A deliberately broken pass: retypes the first node's output to f16 without a cast."""
    n = graph.nodes[0]
    bad_out = Value(n.output.name, n.output.type.with_dtype(torch.float16))
    bad = Node(n.op, n.inputs, n.attrs, (bad_out,), n.name, MappingProxyType({}))
    rest = [Node(m.op, tuple(bad_out if v is n.output else v for v in m.inputs), m.attrs,
                 m.outputs, m.name, m.meta) for m in graph.nodes[1:]]
    outs = [bad_out if v is n.output else v for v in graph.outputs]
    return Graph(graph.inputs, outs, [bad, *rest], graph.constants, graph.name)


def test_parse_options_lists_and_types() -> None:
    (step,) = parse_pipeline("test-options{r=4, ratio=0.25,layers=[0,2,4],mode=b,flag=on,"
                             "name=none}")
    assert step == PassStep("test-options", {"r": 4, "ratio": 0.25, "layers": [0, 2, 4],
                                             "mode": "b", "flag": True, "name": None})
    assert str(step) == "test-options{r=4,ratio=0.25,layers=[0,2,4],mode=b,flag=true,name=None}"
    assert parse_pipeline(" dce , cse ") == [PassStep("dce"), PassStep("cse")]
    assert parse_pipeline("") == []


def test_presets_expand_in_place() -> None:
    steps = parse_pipeline("dce,default,test-options{r=1}")
    default = parse_pipeline(PRESETS["default"].spec)
    assert steps == [PassStep("dce"), *default, PassStep("test-options", {"r": 1})]
    assert parse_pipeline("none") == []
    assert format_pipeline(parse_pipeline("cleanup")) == "fold-constants,remove-noops,cse,dce"


@pytest.mark.parametrize(("spec", "match"), [
    ("dce,frobnicate", r"unknown pass 'frobnicate'; valid passes: .*cse.*dce.*presets: .*default"),
    ("test-options{k=1}", r"pass 'test-options' has no option 'k'; options: r: int = 8, "
                          r"ratio: float = 0.5"),
    ("test-options{r=many}", r"option r='many' is not a valid int"),
    ("test-options{mode=c}", r"option mode='c' is not a valid a\|b \(choose one of a, b\)"),
    ("test-options{flag=maybe}", r"expected true or false"),
    ("test-options{r}", r"option 'r' needs a value"),
    ("test-options{r=1", r"unclosed brace or bracket"),
    ("test-options{r=1}}", r"unbalanced '}'"),
    ("dce}", r"unbalanced '}'"),
    ("default{r=1}", r"preset 'default' takes no options"),
])
def test_parse_errors_name_the_choices(spec: str, match: str) -> None:
    with pytest.raises(AccelValueError, match=match):
        parse_pipeline(spec)


def test_literal_options_are_checked_on_direct_calls_too() -> None:
    from accel.passes.registry import get_pass

    graph = Graph((), (), (), {})
    bad = r"pass 'test-options': option mode='c' is not a valid a\|b \(choose one of a, b\)"
    for fn in (_test_options, get_pass("test-options").fn):
        with pytest.raises(AccelValueError, match=bad):
            fn(graph, PassContext(), mode="c")
        assert fn(graph, PassContext(), mode="b") is graph


def test_parse_rejects_non_string() -> None:
    with pytest.raises(AccelValueError, match="pipeline must be a string"):
        parse_pipeline(["dce"])  # type: ignore[arg-type]


def _tiny() -> tuple[torch.nn.Module, tuple]:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    return model.eval(), (torch.randn(2, 8),)


def test_report_records_each_pass(capsys: pytest.CaptureFixture) -> None:
    model, inputs = _tiny()
    compiled = accel.compile(model, inputs, pipeline="test-options{r=3},cleanup",
                             target="reference")
    report: Report = compiled.report
    assert [p.name for p in report.passes] == ["test-options", "fold-constants", "remove-noops",
                                               "cse", "dce"]
    first = report.passes[0]
    assert first.options == {"r": 3} and not first.changed
    assert first.notes[0].startswith("r=3 ")
    for p in report.passes:
        assert p.nodes_before >= p.nodes_after > 0 and p.seconds >= 0
        assert p.flops_before == p.flops_after == 2 * 2 * 8 * 8 + 2 * 2 * 4 * 8 + 2 * 8
        assert p.params_after == 8 * 8 + 8 + 8 * 4 + 4
    table = report.table()
    assert table.splitlines()[0].split()[:5] == ["pass", "nodes", "MFLOPs", "params", "ms"]
    assert "test-options" in table and "r=3 ratio=0.5" in table
    print(report)
    assert "summary: every node compiled" in capsys.readouterr().out
    assert report.to_dict()["pipeline"] == "test-options{r=3},fold-constants,remove-noops,cse,dce"


def test_dump_after_every_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, inputs = _tiny()
    accel.compile(model, inputs, pipeline="cse,dce", target="reference", dump=tmp_path / "a")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["00_captured.py", "01_cse.py", "02_dce.py"]
    assert "ops.linear(" in (tmp_path / "a" / "02_dce.py").read_text()
    monkeypatch.setenv("ACCEL_DUMP", str(tmp_path / "env"))
    accel.compile(model, inputs, pipeline="dce", target="reference")
    assert sorted(p.name for p in (tmp_path / "env").iterdir()) == ["00_captured.py", "01_dce.py"]


def test_debug_mode_catches_a_broken_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    model, inputs = _tiny()
    accel.compile(model, inputs, pipeline="test-break-types", target="reference", debug=False)
    with pytest.raises(PassError, match="graph is invalid after pass 'test-break-types'"):
        accel.compile(model, inputs, pipeline="test-break-types", target="reference", debug=True)
    monkeypatch.setenv("ACCEL_DEBUG", "1")
    with pytest.raises(PassError, match="test-break-types"):
        accel.compile(model, inputs, pipeline="dce,test-break-types", target="reference")


def test_pass_exception_is_wrapped_with_its_name() -> None:
    @register_pass("test-raises")
    def _raises(graph: Graph, ctx: PassContext) -> Graph:
        raise KeyError("boom")

    ctx = PassContext()
    graph = accel.compile(*_tiny(), pipeline="none", target="reference").graph
    with pytest.raises(PassError, match="pass 'test-raises' failed on graph .*KeyError"):
        run_pipeline(graph, parse_pipeline("test-raises"), ctx)
