"""The cpu target's executor choice: interleaved timing of onnxruntime and aten."""

from __future__ import annotations

import time

import pytest
import torch

from accel.targets import cpu


class _Sleeper:
    """A fake executable that sleeps ``seconds`` per call and logs its calls."""

    def __init__(self, name: str, seconds: float, log: list[str]) -> None:
        self.name, self.seconds, self.log = name, seconds, log

    def run(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        self.log.append(self.name)
        time.sleep(self.seconds)
        return list(inputs)


def test_interleaved_timing_alternates_and_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    pauses: list[float] = []
    real_sleep = time.sleep

    def sleep(s: float) -> None:  # record the switch pauses, still sleep for the fakes
        if s == cpu.SWITCH_PAUSE_S:
            pauses.append(s)
            return
        real_sleep(s)

    monkeypatch.setattr(cpu.time, "sleep", sleep)
    fast, slow = _Sleeper("ort", 0.002, log), _Sleeper("aten", 0.02, log)
    t_fast, t_slow = cpu._interleaved_seconds(fast, slow, [torch.ones(1)], rounds=3)
    assert log == ["ort", "aten"] * 3  # alternating, so drift hits both alike
    assert len(pauses) == 6  # a pause before every call
    assert 0.002 <= t_fast < t_slow and t_slow >= 0.02
