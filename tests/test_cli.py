"""The command line: demo, compile, show, passes, models (run in-process via main())."""

from __future__ import annotations

from pathlib import Path

import pytest

from accel.cli import main


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_demo(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "demo", "--model", "resnet_small_test", "--iters", "2",
                        "--batch-size", "1", "--target", "reference")
    assert code == 0
    assert "accel demo: resnet_small_test" in out
    assert "accel report: resnet_small_test  (target=reference" in out
    err = float(out.split("max |eager - accel| = ")[1].split()[0])
    assert err < 1e-4
    assert "latency (median of 2): eager" in out and "speedup" in out


def test_compile_with_dump(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "compile", "repvgg_small_test", "--pipeline", "cleanup",
                        "--batch-size", "1", "--dump", str(tmp_path), "--debug")
    assert code == 0
    for name in ("fold-constants", "remove-noops", "cse", "dce"):
        assert name in out
    assert "summary:" in out
    assert (tmp_path / "00_captured.py").exists() and (tmp_path / "04_dce.py").exists()


def test_compile_reports_bad_pipeline(capsys: pytest.CaptureFixture) -> None:
    code, _, err = _run(capsys, "compile", "resnet_small_test", "--pipeline", "nope")
    assert code == 2 and "accel compile: error: unknown pass 'nope'; valid passes:" in err


def test_show_with_passes(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "show", "resnet_small_test", "--passes", "--pipeline",
                        "remove-noops,dce", "--batch-size", "1")
    assert code == 0
    assert out.startswith("# ---- after capture ----")
    assert "# ---- after remove-noops" in out and "# ---- after dce" in out
    assert "ops.conv(" in out and "return (" in out


def test_passes(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "passes")
    assert code == 0
    assert "dce  (lossless)" in out and "fold-constants  (lossless)" in out
    assert "    max_elements: int = 1048576" in out
    assert "presets:" in out and "default" in out and "cleanup" in out


def test_models(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "models")
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert code == 0 and {"resnet50", "vit_s16", "bert_base", "repvgg_a0"} <= set(names)
