"""One test per row of docs/bad-inputs.md: what accel does with bad or unusual inputs."""

from __future__ import annotations

import errno
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import accel
from accel import AccelError, AccelTypeError, AccelValueError, CaptureError, GuardError
from accel.testing import assert_matches_eager


def _mlp(din: int = 4, dout: int = 3) -> tuple[torch.nn.Module, torch.Tensor]:
    model = torch.nn.Sequential(torch.nn.Linear(din, 6), torch.nn.GELU(),
                                torch.nn.LayerNorm(6), torch.nn.Linear(6, dout)).eval()
    return model, torch.randn(2, din)


# ---- the model and its example inputs ------------------------------------------------------
@pytest.mark.parametrize("model", [42, "resnet50", None])
def test_non_module(model: object) -> None:
    with pytest.raises(AccelTypeError, match="expects an nn.Module or a callable"):
        accel.compile(model, (torch.randn(2),))


@pytest.mark.parametrize("inputs", [(3,), ("x",), "abc", {"x": 1}])
def test_non_tensor_example_inputs(inputs: object) -> None:
    model, _ = _mlp()
    with pytest.raises(AccelTypeError, match="tensor"):
        accel.compile(model, inputs)


def test_wrong_number_of_example_inputs() -> None:
    model, x = _mlp()
    with pytest.raises(CaptureError, match="could not capture Sequential.*too many positional"):
        accel.compile(model, (x, x))


def test_wrong_example_input_shape() -> None:
    model, _ = _mlp()
    with pytest.raises(CaptureError, match="could not capture Sequential"):
        accel.compile(model, (torch.randn(2, 5),))


# ---- unsupported ops and unusual values -----------------------------------------------------
def test_unsupported_op_falls_back_and_is_reported() -> None:
    class Bessel(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.special.bessel_j0(x) * 2

    x = torch.randn(5)
    compiled = accel.compile(Bessel(), (x,))
    assert [f.split(" ")[1] for f in compiled.report.fallbacks] == \
        ["(prims.bessel_j0.default):"]  # torch's decomposition of special_bessel_j0
    assert "aten fallback" in compiled.report.summary()
    torch.testing.assert_close(compiled(x), Bessel()(x))


def test_nan_and_inf_propagate_like_eager() -> None:
    model, x = _mlp()
    compiled = accel.compile(model, (x,))
    bad = x.clone()
    bad[0, 0], bad[1, 1] = float("nan"), float("inf")
    with torch.no_grad():
        torch.testing.assert_close(compiled(bad), model(bad), equal_nan=True)


def test_empty_tensor_and_zero_size_batch() -> None:
    model, x = _mlp()
    empty = torch.randn(0, 4)
    compiled = accel.compile(model, (empty,))  # compiled for a zero-size batch
    assert compiled(empty).shape == (0, 3)
    compiled = accel.compile(model, (x,))  # a zero-size batch at call time recompiles
    assert compiled(empty).shape == (0, 3)
    assert compiled.report.recompilations == 1
    relu = accel.compile(torch.nn.ReLU(), (torch.randn(2, 0),))  # no features at all
    assert relu(torch.randn(2, 0)).shape == (2, 0)


# ---- call-time guards -----------------------------------------------------------------------
def test_input_on_another_device() -> None:
    model, x = _mlp()
    compiled = accel.compile(model, (x,))
    with pytest.raises(GuardError, match="input 0 is on meta, compiled for cpu"):
        compiled(torch.randn(2, 4, device="meta"))


def test_mismatched_dtype_at_call_time() -> None:
    model, x = _mlp()
    compiled = accel.compile(model, (x,))
    with pytest.raises(GuardError, match=r"torch.float64, compiled for torch.float32.*\.to\("):
        compiled(x.double())


# ---- pipelines ------------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "message"), [
    ("no-such-pass", "unknown pass 'no-such-pass'; valid passes:"),
    ("cse{", "unclosed brace"),
    ("cse}", "unbalanced '}'"),
    ("cse{x=1}", "pass 'cse' has no option 'x'"),
    ("fold-constants{max_elements=abc}", "max_elements='abc' is not a valid int"),
    ("fold-constants{max_elements}", "needs a value"),
    ("default{a=1}", "preset 'default' takes no options"),
    (None, "pipeline must be a string"),
])
def test_invalid_pipeline_string(spec: object, message: str) -> None:
    model, x = _mlp()
    with pytest.raises(AccelValueError, match=message.replace("{", r"\{").replace("(", r"\(")):
        accel.compile(model, (x,), pipeline=spec)


# ---- targets and the environment ------------------------------------------------------------
def test_unknown_target_option() -> None:
    model, x = _mlp()
    with pytest.raises(AccelValueError, match=r"target 'cpu' has no option 'executr'; its "
                                              r"options: executor \("):
        accel.compile(model, x, target="cpu", options={"executr": "ort"})


@pytest.mark.parametrize("options, message", [
    ({"pipeline": "defualt"}, "unknown pass 'defualt'"), ({"target": "tpu"}, "unknown target"),
    ({"target": "cpu", "executr": "ort"}, "target 'cpu' has no option 'executr'")])
def test_bad_torch_compile_settings(options: dict, message: str) -> None:
    model, x = _mlp()
    torch._dynamo.reset()
    with pytest.raises(Exception, match=message), torch.no_grad():
        torch.compile(model, backend="accel", options=options)(x)


def test_torch_compile_mode() -> None:
    from accel import torch_compile

    model, x = _mlp()
    torch._dynamo.reset()
    torch_compile._warned.discard("mode")
    with pytest.warns(UserWarning, match="mode='reduce-overhead' has no meaning"), \
            torch.no_grad():
        out = torch.compile(model, backend="accel", mode="reduce-overhead")(x)
    torch.testing.assert_close(out, model(x))


@pytest.mark.parametrize("name", ["ACCEL_DEBUG", "ACCEL_PROGRESS"])
def test_bad_environment_flag(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = _mlp()
    monkeypatch.setenv(name, "maybe")
    with pytest.raises(AccelValueError, match=f"environment variable {name}='maybe' is not a "
                                              "flag: use 1/0, true/false"):
        accel.compile(model, x, "default,quantize", target="reference")


def test_size_outside_the_dynamic_range() -> None:
    from torch.export import Dim

    model, x = _mlp()
    compiled = accel.compile(model, x, target="reference",
                             dynamic_shapes=({0: Dim("b", max=8)},))
    with pytest.raises(GuardError, match=r"input 0 dim 0 is 9, compiled for b in \[2, 8\]"):
        compiled(torch.randn(9, 4))
    compiled(torch.randn(1, 4))  # size 1: a static specialization, not an error
    assert compiled.report.recompilations == 1


@pytest.mark.parametrize("spec, error", [("everything", AccelTypeError),
                                         (({0: None}, {0: None}), CaptureError)])
def test_invalid_dynamic_shapes(spec: object, error: type) -> None:
    model, x = _mlp()
    with pytest.raises(error, match="dynamic_shapes|could not capture"):
        accel.compile(model, x, dynamic_shapes=spec)


# ---- the kernel cache -----------------------------------------------------------------------
_KERNEL = '''import triton
import triton.language as tl


@triton.jit
def add_one(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=mask) + 1, mask=mask)
'''


def _cache_module():  # noqa: ANN202
    try:
        from accel.backends.triton import cache
    except ModuleNotFoundError:
        pytest.xfail("kernel cache not yet implemented")
    return cache


def _run_add_one(kernel: object) -> torch.Tensor:
    x = torch.arange(10.0)
    y = torch.empty_like(x)
    kernel[(1,)](x, y, 10, BLOCK=16)  # type: ignore[index]
    return y


def test_corrupt_kernel_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _cache_module()
    monkeypatch.setenv("ACCEL_CACHE_DIR", str(tmp_path))
    path = cache.kernel_path("add_one", _KERNEL, interpret=True)
    for garbage in ("def add_one(:\n", "", _KERNEL[: len(_KERNEL) // 2]):  # corrupt, empty, torn
        path.write_text(garbage)
        assert cache.kernel_path("add_one", _KERNEL, interpret=True) == path
        assert path.read_text() == _KERNEL
    (path.parent / "add_one.py.sha256").write_text("0" * 64)  # a bad checksum also rebuilds
    cache.kernel_path("add_one", _KERNEL, interpret=True)
    assert path.read_text() == _KERNEL
    torch.testing.assert_close(_run_add_one(cache.load_kernel("add_one", _KERNEL, interpret=True)),
                               torch.arange(10.0) + 1)


def test_read_only_cache_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _cache_module()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    monkeypatch.setenv("ACCEL_CACHE_DIR", str(ro))
    if os.access(ro, os.W_OK):  # root ignores permission bits: make every write fail instead
        def denied(*args: object, **kwargs: object) -> None:
            raise PermissionError(errno.EACCES, "Permission denied (read-only cache)", str(ro))

        monkeypatch.setattr(Path, "mkdir", denied)
        monkeypatch.setattr(cache.tempfile, "mkstemp", denied)
    source = _KERNEL.replace("+ 1", "+ 1.0")  # a kernel not cached yet
    try:
        kernel = cache.load_kernel("add_one", source, interpret=True)
    except AccelError as e:
        assert str(ro) in str(e) or "ACCEL_CACHE_DIR" in str(e)
        return
    finally:
        ro.chmod(0o755)
    torch.testing.assert_close(_run_add_one(kernel), torch.arange(10.0) + 1)


# ---- ONNX export ----------------------------------------------------------------------------
def _export_onnx():  # noqa: ANN202
    if not hasattr(accel, "export_onnx"):
        pytest.skip("accel.export_onnx is not implemented yet")
    return accel.export_onnx


@pytest.mark.parametrize("where", ["missing-dir", "a-directory", "read-only-dir"])
def test_unwritable_onnx_path(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export = _export_onnx()
    model, x = _mlp()
    path = {"missing-dir": tmp_path / "nope" / "m.onnx", "a-directory": tmp_path,
            "read-only-dir": tmp_path / "ro" / "m.onnx"}[where]
    if where == "read-only-dir":
        path.parent.mkdir()
        path.parent.chmod(0o555)
        if os.access(path.parent, os.W_OK):  # running as root: emulate a user's view
            from accel.backends.onnx import exporter

            monkeypatch.setattr(exporter.os, "access", lambda p, mode: False)
    with pytest.raises(accel.ExportError, match=f"cannot write ONNX model to {path}"):
        export(model, (x,), path)
    assert not path.is_file()


# ---- concurrency and scale ------------------------------------------------------------------
def test_concurrent_compiles_from_four_threads() -> None:
    cases = []
    for i in range(4):
        torch.manual_seed(i)
        cases.append(_mlp(din=3 + i, dout=2 + i))

    def compile_and_check(case: tuple[torch.nn.Module, torch.Tensor]) -> float:
        model, x = case
        return assert_matches_eager(accel.compile(model, (x,)), model, (x,), atol=1e-5)

    with ThreadPoolExecutor(max_workers=4) as pool:
        errors = list(pool.map(compile_and_check, cases))
    assert len(errors) == 4 and max(errors) <= 1e-5


@pytest.mark.slow
def test_very_large_graph_compiles() -> None:
    """A deep residual MLP of 1000+ nodes compiles and matches eager (timing:
    benchmarks/compile_scaling.py; here only a generous bound)."""

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.relu(self.fc(x)) * 0.5

    model = torch.nn.Sequential(*[Block() for _ in range(300)]).eval()
    x = torch.randn(2, 8)
    t0 = time.perf_counter()
    compiled = accel.compile(model, (x,))
    seconds = time.perf_counter() - t0
    captured = compiled.report.passes[0].nodes_before
    assert captured >= 1000, captured
    assert seconds < 300, f"compiling {captured} nodes took {seconds:.0f} s"
    assert_matches_eager(compiled, model, (x,), atol=1e-4)
