"""The persistent compile cache: a second process (here: a second compile with the
in-process state gone) loads the compiled model instead of compiling it, the key changes
with everything the result depends on, and a corrupt entry is rebuilt."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import accel
from accel import cache


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 64)
        self.norm = torch.nn.LayerNorm(64)
        self.fc2 = torch.nn.Linear(64, 8)
        self.scale = 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.norm(torch.relu(self.fc1(x)))) * self.scale


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:  # noqa: ANN001
    monkeypatch.setenv("ACCEL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ACCEL_COMPILE_CACHE", "1")
    return tmp_path / "compiled"


def _entries(d: Path) -> list[Path]:
    return [p for p in d.iterdir() if not p.name.startswith(".")] if d.exists() else []


@pytest.mark.parametrize("executor", ["ort", "aten"])
def test_second_compile_loads_the_entry_and_matches(cache_dir: Path, executor: str) -> None:
    model, x = Block().eval(), torch.randn(4, 16)
    first = accel.compile(model, (x,), options={"executor": executor}, dynamic_shapes="auto")
    assert len(_entries(cache_dir)) == 1
    assert any("compile cache: stored" in n for n in first.report.lowering)
    assert set(first.report.stages) >= {"capture", "passes", "lowering"}
    second = accel.compile(model, (x,), options={"executor": executor}, dynamic_shapes="auto")
    assert any("compile cache: loaded" in n for n in second.report.lowering)
    assert set(second.report.stages) == {"cache"}
    assert second.report.executor == first.report.executor
    assert [p.name for p in second.report.passes] == [p.name for p in first.report.passes]
    for b in (4, 7):  # the loaded graph is the dynamic one: every batch size, no recompile
        y = torch.randn(b, 16)
        torch.testing.assert_close(second(y), model(y), atol=1e-5, rtol=1e-5)
    assert second.report.recompilations == 0


def test_key_changes_with_weights_attributes_pipeline_and_shapes(cache_dir: Path) -> None:
    model, x = Block().eval(), torch.randn(4, 16)
    accel.compile(model, (x,))
    accel.compile(model, (x,))
    assert len(_entries(cache_dir)) == 1
    model.scale = 3.0  # a plain attribute forward reads
    cm = accel.compile(model, (x,))
    torch.testing.assert_close(cm(x), model(x), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        model.fc1.weight[0, 0] += 1.0  # one weight
    cm = accel.compile(model, (x,))
    torch.testing.assert_close(cm(x), model(x), atol=1e-5, rtol=1e-5)
    accel.compile(model, (x,), pipeline="default,fold-linear")
    accel.compile(model, (torch.randn(5, 16),))
    assert len(_entries(cache_dir)) == 5


def test_host_profile_is_part_of_the_key(cache_dir: Path, monkeypatch) -> None:  # noqa: ANN001
    model, x = Block().eval(), torch.randn(4, 16)
    accel.compile(model, (x,))
    monkeypatch.setenv("ACCEL_HOST_ISA", "avx2,fma")
    accel.compile(model, (x,))
    monkeypatch.setenv("ACCEL_HOST_ISA", "avx2,fma,avx512f,avx512_vnni")
    accel.compile(model, (x,))
    assert len(_entries(cache_dir)) == 3


def test_corrupt_entry_is_rebuilt(cache_dir: Path) -> None:
    model, x = Block().eval(), torch.randn(4, 16)
    accel.compile(model, (x,), options={"executor": "ort"})
    (entry,) = _entries(cache_dir)
    payload = entry / "model.onnx.data"
    payload.write_bytes(payload.read_bytes()[:-10])  # a torn write
    with pytest.warns(UserWarning, match="corrupt"):
        cm = accel.compile(model, (x,), options={"executor": "ort"})
    assert any("compile cache: stored" in n for n in cm.report.lowering)
    torch.testing.assert_close(cm(x), model(x), atol=1e-5, rtol=1e-5)
    assert cache.load(entry.name) is not None


def test_corrupt_weights_checked_in_the_background_are_rebuilt(cache_dir: Path,
                                                              monkeypatch) -> None:  # noqa: ANN001
    # Large payloads are hashed while the session starts from them: a flipped byte in the
    # weights (same size, so only the hash can tell) must still discard what was built.
    monkeypatch.setattr(cache, "BACKGROUND_CHECK_BYTES", 0)
    model, x = Block().eval(), torch.randn(4, 16)
    accel.compile(model, (x,), options={"executor": "ort"})
    (entry,) = _entries(cache_dir)
    payload = entry / "model.onnx.data"
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0x40
    payload.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="corrupt"):
        cm = accel.compile(model, (x,), options={"executor": "ort"})
    assert any("compile cache: stored" in n for n in cm.report.lowering)
    torch.testing.assert_close(cm(x), model(x), atol=1e-5, rtol=1e-5)
    second = accel.compile(model, (x,), options={"executor": "ort"})  # the rebuilt entry
    assert any("compile cache: loaded" in n for n in second.report.lowering)


def test_threaded_fingerprint_equals_the_serial_one(monkeypatch) -> None:  # noqa: ANN001
    model = Block().eval()
    serial = cache.model_fingerprint(model)
    monkeypatch.setattr(cache, "PARALLEL_HASH_BYTES", 0)
    monkeypatch.setattr(cache, "physical_cores", lambda: 4)
    assert cache.model_fingerprint(model) == serial


def test_models_the_key_cannot_describe_are_not_cached(cache_dir: Path) -> None:
    model, x = Block().eval(), torch.randn(4, 16)
    model.fc1.register_forward_hook(lambda m, i, o: o * 2)
    assert cache.model_fingerprint(model) is None
    cm = accel.compile(model, (x,))
    torch.testing.assert_close(cm(x), model(x), atol=1e-5, rtol=1e-5)
    assert not _entries(cache_dir)


def test_unwritable_cache_warns_and_compiles(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("ACCEL_CACHE_DIR", str(ro))
    monkeypatch.setenv("ACCEL_COMPILE_CACHE", "1")
    model, x = Block().eval(), torch.randn(4, 16)
    try:
        import os
        if os.access(ro, os.W_OK):  # root ignores the mode bits
            pytest.skip("running as a user who can write anywhere")
        with pytest.warns(UserWarning, match="ACCEL_CACHE_DIR"):
            cm = accel.compile(model, (x,))
    finally:
        ro.chmod(0o700)
    torch.testing.assert_close(cm(x), model(x), atol=1e-5, rtol=1e-5)


_SCRIPT = textwrap.dedent("""
    import json, sys, time, torch, accel
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, vocab_size=500)
    model = BertModel(cfg).eval()
    ids = torch.randint(0, 500, (2, 12))
    t0 = time.perf_counter()
    cm = accel.compile(model, (ids,), dynamic_shapes="auto")
    seconds = time.perf_counter() - t0
    out = cm(ids)[0] if isinstance(cm(ids), tuple) else cm(ids)["last_hidden_state"]
    ref = model(ids).last_hidden_state
    print(json.dumps({"seconds": seconds, "err": float((out - ref).abs().max()),
                      "stages": cm.report.stages}))
""")


def test_second_process_loads_instead_of_compiling(cache_dir: Path) -> None:
    """Two processes, one model: the second one's compile is a cache load."""
    import json

    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                             check=True, env={**__import__("os").environ})
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "capture" in runs[0]["stages"] and set(runs[1]["stages"]) == {"cache"}
    assert runs[0]["err"] < 1e-4 and runs[1]["err"] < 1e-4
    assert runs[1]["seconds"] < runs[0]["seconds"]


def test_function_attributes_are_keyed_and_unpicklable_graphs_skip_the_cache(
        cache_dir: Path) -> None:
    model, x = Block().eval(), torch.randn(4, 16)
    model.act = torch.relu  # a builtin held as an attribute
    a = cache.model_fingerprint(model)
    model.act = torch.sigmoid
    assert cache.model_fingerprint(model) != a
    assert cache.store("k", cache.Entry(lambda: 0, "aten")) is None  # unpicklable: skipped
    cm = accel.compile(model, (x,))
    torch.testing.assert_close(cm(x), model(x), atol=1e-5, rtol=1e-5)


SCALE_FN = torch.sin


class ReadsAGlobal(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SCALE_FN(x) + 1


def test_key_changes_with_the_globals_forward_reads(cache_dir: Path, monkeypatch) -> None:  # noqa: ANN001
    """A forward that reads a module-level value computes something else when it changes,
    though class and source file did not: the key must see it (torch.all vs torch.any
    differ only in the names their bytecode reads)."""
    x = torch.randn(4, 8)
    first = cache.model_fingerprint(ReadsAGlobal())
    monkeypatch.setattr(sys.modules[__name__], "SCALE_FN", torch.cos)
    assert cache.model_fingerprint(ReadsAGlobal()) != first
    cm = accel.compile(ReadsAGlobal(), (x,))
    torch.testing.assert_close(cm(x), torch.cos(x) + 1)
    f_all, f_any = (lambda t: torch.all(t)), (lambda t: torch.any(t))  # noqa: E731
    assert cache._plain(f_all) != cache._plain(f_any)
