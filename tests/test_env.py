"""Environment variables are parsed in one place (accel/env.py), the same way everywhere."""

from __future__ import annotations

import pytest
import torch

import accel
from accel import env
from accel.ir.graph import Graph


@pytest.mark.parametrize("raw, want", [
    ("1", True), ("true", True), ("TRUE", True), ("yes", True), ("On", True),
    ("0", False), ("false", False), ("No", False), ("off", False), ("", False),
])
def test_flags_accept_the_usual_spellings(monkeypatch: pytest.MonkeyPatch, raw: str,
                                          want: bool) -> None:
    monkeypatch.setenv("ACCEL_DEBUG", raw)
    assert env.debug() is want
    monkeypatch.setenv("TRITON_INTERPRET", raw)
    assert env.triton_interpret() is want


@pytest.mark.parametrize("name, read", [("ACCEL_DEBUG", env.debug),
                                        ("ACCEL_PROGRESS", env.progress),
                                        ("TRITON_INTERPRET", env.triton_interpret)])
def test_a_bad_flag_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str,
                                                    read) -> None:  # noqa: ANN001
    for raw in ("maybe", " 1", "2"):  # Triton reads " 1" and "2" as off: not a silent on
        monkeypatch.setenv(name, raw)
        with pytest.raises(accel.AccelValueError, match=f"{name}={raw!r} is not a flag"):
            read()


def test_unset_flags_take_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ACCEL_DEBUG", "ACCEL_PROGRESS", "ACCEL_DUMP", "ACCEL_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert env.debug() is False and env.progress() is True and env.dump_dir() is None
    assert env.cache_dir().name == "accel"


def test_accel_debug_true_verifies_every_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    verify = Graph.verify
    monkeypatch.setattr(Graph, "verify", lambda self: calls.append(self) or verify(self))
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()).eval()
    monkeypatch.setenv("ACCEL_DEBUG", "true")
    accel.compile(model, torch.randn(2, 4), target="reference")
    assert len(calls) >= 2  # after capture and after each pass
    monkeypatch.setenv("ACCEL_DEBUG", "sure")
    with pytest.raises(accel.AccelValueError, match="ACCEL_DEBUG"):
        accel.compile(model, torch.randn(2, 4), target="reference")


def test_triton_interpret_spellings_agree_with_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cuda target and the hand-written kernels read TRITON_INTERPRET=true as on, as Triton
    itself does (before, one module read it as on and two as off)."""
    from triton import knobs

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU()).eval()
    monkeypatch.setenv("TRITON_INTERPRET", "true")
    assert knobs.runtime.interpret is True
    compiled = accel.compile(model, torch.randn(2, 8), target="cuda", options={"interpret": True})
    assert compiled.report.executor == "triton"
    from accel.backends.triton.kernels import int8, tokens

    assert int8._blocks() == (16, 16, 32) and tokens._blocks(8) == (16, 8)  # interpreter sizes
    monkeypatch.setenv("TRITON_INTERPRET", "bogus")
    with pytest.raises(accel.AccelValueError, match="TRITON_INTERPRET"):
        accel.compile(model, torch.randn(2, 8), target="cuda", options={"interpret": True})
