"""Shared wall-clock timing: interleaved rounds (used by the cpu target's executor choice)."""

from __future__ import annotations

import statistics
import time

import pytest

from accel import timing
from accel.targets import cpu


def test_interleaved_rounds_alternate_and_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    pauses: list[float] = []
    real_sleep = time.sleep

    def sleep(s: float) -> None:  # record the switch pauses; the fakes below still sleep
        if s == cpu.SWITCH_PAUSE_S:
            pauses.append(s)
            return
        real_sleep(s)

    def fake(name: str, seconds: float):  # noqa: ANN202
        def run() -> None:
            calls.append(name)
            real_sleep(seconds)
        return run

    monkeypatch.setattr(timing.time, "sleep", sleep)
    times = timing.interleaved_ms({"ort": fake("ort", 0.002), "aten": fake("aten", 0.02)},
                                  rounds=3, pause_s=cpu.SWITCH_PAUSE_S)
    assert calls == ["ort", "aten"] * 3  # alternating, so drift hits both alike
    assert len(pauses) == 6  # a pause before every call
    assert [len(t) for t in times.values()] == [3, 3]
    assert min(times["ort"]) >= 2.0
    assert statistics.median(times["ort"]) < statistics.median(times["aten"])
