"""accel bench: the --quick smoke run of benchmarks/run.py writes JSON, markdown and a plot
with the expected rows, columns, metadata and the project's targets section (timings are not
asserted); the library itself judges nothing."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from accel.bench import report
from accel.bench.suite import QUICK_CASES
from accel.bench.systems import SYSTEMS
from accel.cli import main

QUICK_SYSTEMS = [s.name for s in SYSTEMS.values() if s.quick]
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _project_targets():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("project_targets", BENCHMARKS / "targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.targets


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    out = tmp_path_factory.mktemp("bench")
    subprocess.run([sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--out", str(out),
                    "--fresh", "--no-progress", "--time-budget", "0.05"], check=True,
                   cwd=BENCHMARKS.parent)
    return json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text(), out


@pytest.mark.slow
def test_quick_run_writes_every_model_and_system(quick_results: tuple[dict, str, Path]) -> None:
    results, _, _ = quick_results
    pairs = [(r["model"], r["system"]) for r in results["rows"]]
    assert pairs == [(c.name, s) for c in QUICK_CASES for s in QUICK_SYSTEMS]
    for r in results["rows"]:
        assert r["status"] == "ok" or r["status"].startswith(("n/a (not available", "failed:"))
    eager = [r for r in results["rows"] if r["system"] == "eager"]
    assert all(r["status"] == "ok" for r in eager), [r["status"] for r in eager]
    for r in eager:
        assert r["speedup"] == pytest.approx(1.0)
        assert r["cosine"] == pytest.approx(1.0) and r["max_abs"] == 0.0
        assert r["median_ms"] > 0 and r["peak_mem_mb"] > 0 and r["iters"] >= 3
    digits = next(r for r in eager if r["model"] == "digits_vit")
    assert 0.0 <= digits["top1"] == digits["top1_eager"] <= 100.0


@pytest.mark.slow
def test_quick_run_metadata_markdown_plot_and_targets(quick_results: tuple[dict, str, Path]
                                                      ) -> None:
    results, md, out = quick_results
    env = results["environment"]
    for key in ("date", "device", "cpu", "cpu_cores", "torch", "onnxruntime", "accel"):
        assert env[key], key
        assert f"**{key}**" in md
    header = next(line for line in md.splitlines() if line.startswith("| model"))
    assert [c.strip() for c in header.strip("|").split("|")] == report.COLUMNS
    table = [line for line in md.splitlines() if line.startswith("| ") and line != header]
    assert len(table) == len(QUICK_CASES) * len(QUICK_SYSTEMS)
    assert "## targets" in md
    verdicts = {t["target"]: t["verdict"] for t in results["targets"]}
    assert len(verdicts) == len(QUICK_CASES) + 2
    assert set(verdicts.values()) <= {"met", "missed", "n/a"}
    # vit_s16 is not in the quick run: its speedup target cannot be judged
    assert verdicts[next(t for t in verdicts if t.startswith("vit_s16"))] == "n/a"
    with open(out / "bench.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_targets_verdicts_from_rows() -> None:
    rows = [
        {"model": "vit_s16", "system": "eager", "status": "ok", "median_ms": 100.0,
         "p25_ms": 95.0, "p75_ms": 105.0},
        {"model": "vit_s16", "system": "ort-fp32", "status": "ok", "median_ms": 40.0,
         "p25_ms": 39.0, "p75_ms": 41.0},
        {"model": "vit_s16", "system": "accel-default", "status": "ok", "median_ms": 50.0,
         "p25_ms": 49.0, "p75_ms": 51.0},
        {"model": "vit_s16", "system": "accel-fastest", "status": "ok", "median_ms": 18.0,
         "p25_ms": 17.0, "p75_ms": 19.0},
        {"model": "digits_vit", "system": "accel-fastest", "status": "ok", "median_ms": 1.0,
         "p25_ms": 1.0, "p75_ms": 1.0, "top1": 97.5, "top1_eager": 97.8},
        {"model": "digits_vit", "system": "accel-default", "status": "n/a (not available: x)"},
    ]
    report.add_derived(rows)
    assert rows[3]["speedup"] == pytest.approx(100 / 18)
    got = [(t["target"].split(":")[0], t["verdict"]) for t in _project_targets()(rows)]
    assert got == [("vit_s16", "missed"), ("digits_vit", "n/a"), ("vit_s16 batch 8", "met"),
                   ("digits_vit", "met")]


def test_the_library_judges_nothing() -> None:
    results = {"environment": {"date": "d"}, "settings": {}, "targets": [],
               "rows": [{"model": "m", "system": "eager", "status": "ok", "median_ms": 1.0}]}
    md = report.markdown(results)
    assert "| m | eager | ok |" in md and "## targets" not in md


def test_unknown_model_is_a_clear_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--models", "nope", "--out", "/nonexistent/never-written"]) == 2
    assert "unknown benchmark model 'nope'" in capsys.readouterr().err
