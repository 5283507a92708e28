"""accel bench: the --quick smoke run of benchmarks/run.py writes JSON, markdown and a plot
with the expected rows, columns, metadata and the project's targets section (timings are not
asserted); the library itself judges nothing."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from accel.bench import digits, header_lines, report
from accel.bench.measure import Settings, measure
from accel.bench.suite import QUICK_CASES, Workload
from accel.bench.systems import SYSTEMS
from accel.cli import main
from accel.errors import AccelValueError
from accel.host import host
from accel.models.vit import build_vit

QUICK_SYSTEMS = [s.name for s in SYSTEMS.values() if s.quick]
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
_FIND_SPEC = importlib.util.find_spec


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
    digits = next(r for r in eager if r["model"] == "digits_vit_quick")
    assert 0.0 <= digits["top1"] == digits["top1_eager"] <= 100.0


@pytest.mark.slow
def test_quick_run_metadata_markdown_plot_and_targets(quick_results: tuple[dict, str, Path]
                                                      ) -> None:
    results, md, out = quick_results
    env = results["environment"]
    for key in ("date", "device", "host", "isa", "cpu", "cpu_cores", "torch", "onnxruntime",
                "openvino", "accel"):
        assert env[key] is not None, key
        assert f"**{key}**" in md
    assert env["host"] == host().describe() and env["isa"] == sorted(host().isa)
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


def test_environment_and_printed_header_show_the_host_line() -> None:
    env = report.environment("cpu")
    assert env["host"] == host().describe()
    assert env["isa"] == sorted(host().isa)
    lines = header_lines(env)
    assert lines[0].startswith(f"host: {host().describe()}")
    assert "onnxruntime" in lines[1] and "openvino" in lines[1]


# --- the shipped digits ViT weights -----------------------------------------------------------

def test_shipped_digits_weights_are_the_default_recipe_in_fp16() -> None:
    shipped = digits.load_shipped()
    assert shipped is not None, f"{digits.SHIPPED_WEIGHTS} is missing or unreadable"
    assert digits.SHIPPED_WEIGHTS.stat().st_size < 500_000
    # a recipe change (RECIPE_VERSION) must come with re-shipped weights:
    # python benchmarks/digits.py --ship
    assert shipped["key"] == digits._cache_key(digits.DEFAULT_SEED, digits.DEFAULT_EPOCHS,
                                               dict(digits.DEFAULT_OVERRIDES))
    model = build_vit("vit_tiny_digits", seed=0, **digits.DEFAULT_OVERRIDES)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in shipped["state_dict"].items()} == expected
    assert all(v.dtype == torch.float16 for v in shipped["state_dict"].values())


def test_shipped_digits_weights_are_package_data() -> None:
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((BENCHMARKS.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["accel.bench"]
    assert any(digits.SHIPPED_WEIGHTS.match(p) for p in patterns)
    assert digits.SHIPPED_WEIGHTS.parent == Path(digits.__file__).parent


def test_fresh_checkout_loads_the_shipped_digits_vit_without_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCEL_CACHE_DIR", str(tmp_path))  # an empty cache: a fresh checkout

    def no_training(*args: object) -> None:
        raise AssertionError("trained although the weights are shipped")

    monkeypatch.setattr(digits, "_train", no_training)
    task = digits.train_digits_vit()
    assert task.weights == "shipped" and task.train_seconds == 0.0
    assert not list(tmp_path.iterdir())  # nothing cached, nothing downloaded
    shipped = digits.load_shipped()
    assert shipped is not None
    assert task.accuracy(task.model, task.x_test, task.y_test) == pytest.approx(
        shipped["accuracy"]["test"])
    assert task.model.pos_embed.dtype == torch.float32


def test_other_digits_configurations_are_not_served_the_shipped_weights() -> None:
    for seed, epochs in ((1, digits.DEFAULT_EPOCHS), (0, 5)):
        key = digits._cache_key(seed, epochs, dict(digits.DEFAULT_OVERRIDES))
        assert digits._shipped_state(key) is None


# --- OpenVINO systems -------------------------------------------------------------------------

def _tiny_workload() -> Workload:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4)).eval()
    x = torch.randn(2, 16)
    return Workload(model, (x,), [(torch.randn(2, 16),)])


FAST = Settings(warmup=0, min_iters=1, max_iters=1, time_budget_s=0.0, isolate=False)


def test_openvino_systems_are_quick_peers() -> None:
    assert SYSTEMS["openvino"].quick and SYSTEMS["accel-openvino"].quick
    names = list(SYSTEMS)
    assert names.index("openvino") == names.index("ort-int8") + 1  # next to its ORT peers


def test_openvino_system_matches_eager() -> None:
    pytest.importorskip("openvino")
    row = measure(_tiny_workload(), "openvino", FAST)
    assert row["status"] == "ok", row
    assert row["cosine"] == pytest.approx(1.0, abs=1e-6) and row["max_abs"] < 1e-4


def test_accel_openvino_system_runs_or_is_not_available() -> None:
    pytest.importorskip("openvino")
    row = measure(_tiny_workload(), "accel-openvino", FAST)
    if row["status"] == "ok":
        assert row["executor"] == "openvino"
        assert row["cosine"] == pytest.approx(1.0, abs=1e-6)
    else:  # an accel whose CPU target has no OpenVINO executor yet
        assert row["status"].startswith("n/a (not available: accel rejects"), row


@pytest.mark.parametrize("system", ["openvino", "accel-openvino"])
def test_openvino_systems_without_openvino_are_not_available(
        system: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else _FIND_SPEC(name, *a))
    row = measure(_tiny_workload(), system, FAST)
    assert row["status"].startswith("n/a (not available: openvino is not installed"), row
    assert "accel[openvino]" in row["status"]


def test_accel_openvino_rejected_executor_option_is_not_available(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import accel

    def reject(*args: object, **kwargs: object) -> None:
        raise AccelValueError("cpu target: unknown executor 'openvino'; valid: 'auto', 'ort'")

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(accel, "compile", reject)
    row = measure(_tiny_workload(), "accel-openvino", FAST)
    assert row["status"] == ("n/a (not available: accel rejects options={'executor': "
                             "'openvino'}: cpu target: unknown executor 'openvino'; valid: "
                             "'auto', 'ort')")
