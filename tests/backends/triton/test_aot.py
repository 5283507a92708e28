"""Ahead-of-time compilation of the cuda target's kernels for sm_80 and sm_90a, no GPU needed.

Together with the interpreter tests (numerics), these are the CI contract for the cuda
target (docs/architecture.md): every kernel the built-in models launch compiles for both
architectures, none spills, shared memory fits, and on sm_90a every fp16/bf16 matmul-class
kernel uses wgmma (or says in its notes why it cannot).
"""

from __future__ import annotations

import pytest
import torch

import accel
from accel.api import kernel_graph
from accel.backends.triton import aot
from accel.backends.triton.kernel import Device
from accel.backends.triton.record import Recorder, TensorArg
from accel.backends.triton.templates import attention, matmul
from accel.cli import main
from accel.errors import AccelValueError
from accel.models import get_model

ARCHS = ("sm_80", "sm_90a")
HOPPER = Device((9, 0), record=True)
AMPERE = Device((8, 0), record=True)


def _problems(infos: list[aot.KernelInfo]) -> list[str]:
    out = [f"{i.arch} {i.name} [{i.config}]: {p}" for i in infos for p in i.problems()]
    out += [f"{i.arch} {i.name} [{i.config}]: {i.dtype} {i.kind} uses {i.tensor_cores}, "
            "not wgmma" for i in aot.missing_wgmma(infos) if not i.notes]
    return out


def _check(name: str, dtype: str | None, pipeline: str = "default",
           batch_size: int | None = None) -> list[aot.KernelInfo]:
    model, inputs = get_model(name, batch_size=batch_size)
    graph, inputs = kernel_graph(model, inputs, pipeline, dtype)
    infos = []
    for arch in ARCHS:
        launches = aot.record(graph, inputs, arch)
        assert launches, f"{name}: no Triton launch recorded for {arch}"
        infos += aot.compile_launches(launches, arch)
    problems = _problems(infos)
    assert not problems, f"{name} {dtype} {pipeline}:\n" + "\n".join(problems)
    return infos


# ---- the parts ---------------------------------------------------------------------------


def test_ptxas_log_and_ptx_are_read() -> None:
    log = ("ptxas info    : Compiling entry function 'k' for 'sm_90a'\n"
           "ptxas info    : Function properties for k\n"
           "    24 bytes stack frame, 16 bytes spill stores, 8 bytes spill loads\n"
           "ptxas info    : Used 255 registers, used 1 barriers, 400 bytes cmem[0]\n")
    assert aot._parse_ptxas(log) == (255, 16, 8, 24)
    assert aot.tensor_core_family("wgmma.mma_async.sync.aligned.m64n64k16") == "wgmma"
    assert aot.tensor_core_family("mma.sync.aligned.m16n8k16.row.col") == "mma"
    assert aot.tensor_core_family("fma.rn.f32") == "none"


def test_stand_in_tensors_keep_dtype_and_alignment() -> None:
    for dtype in (torch.float16, torch.int8, torch.float32):
        for aligned in (True, False):
            t = TensorArg(dtype, aligned, 0).stand_in()
            assert t.dtype == dtype and (t.data_ptr() % 16 == 0) == aligned


def test_recording_runs_nothing_and_builds_gpu_kernels() -> None:
    """Under the interpreter (this process), a recording lowering still emits the GPU
    configs and records every Triton group's launch; outputs come back zero-filled."""
    model, inputs = get_model("vit_small_test")
    graph, inputs = kernel_graph(model, inputs)
    launches = aot.record(graph, inputs, "sm_90a")
    kinds = {r.group.kind.name for r in launches}
    assert {"matmul", "attention", "reduction"} <= kinds
    mm = next(r for r in launches if r.group.kind.name == "matmul")
    assert len(mm.kernel.configs) > 1  # GPU autotune list, not the interpreter's one config
    assert all(isinstance(a, TensorArg) for a in mm.args[:3])


def test_matmul_configs_follow_the_arch_and_dtype() -> None:
    for dtype in (torch.float16, torch.bfloat16):
        offered, notes = matmul.configs(HOPPER, dtype, 4096)
        assert offered and all(c[0] >= 64 and c[3] % 4 == 0 for c in offered) and not notes
        small, notes = matmul.configs(HOPPER, dtype, 16)
        assert all(c[0] < 64 for c in small) and "mma.sync" in notes[0]
        assert matmul.configs(AMPERE, dtype, 4096)[0] == matmul.GPU_CONFIGS
    # exact fp32 has no tensor cores to feed: every config; tf32 is a tensor-core dot
    assert matmul.configs(HOPPER, torch.float32, 4096)[0] == matmul.GPU_CONFIGS
    tf32 = Device((9, 0), record=True, fp32_precision="tf32")
    assert all(c[0] >= 64 for c in matmul.configs(tf32, torch.float32, 4096)[0])
    assert attention.configs(HOPPER, torch.float16) == attention.TENSOR_CORE_CONFIGS
    assert attention.configs(HOPPER, torch.float32) == attention.IEEE_CONFIGS
    assert attention.configs(tf32, torch.float32) == attention.TENSOR_CORE_CONFIGS


def test_fp32_precision_follows_torch_and_the_option() -> None:
    from accel.targets.cuda import fp32_precision

    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert fp32_precision() == "ieee"
        torch.set_float32_matmul_precision("high")
        assert fp32_precision() == "tf32"
    finally:
        torch.set_float32_matmul_precision(before)
    assert fp32_precision("tf32x3") == "tf32x3"
    with pytest.raises(AccelValueError, match="fp32_precision"):
        fp32_precision("fast")


@pytest.mark.parametrize("precision", ["tf32", "tf32x3"])
def test_tf32_dots_run_under_the_interpreter(precision: str, tmp_path) -> None:  # noqa: ANN001
    model, inputs = get_model("vit_small_test")
    compiled = accel.compile(model, inputs, target="cuda", dump=tmp_path,
                             options={"interpret": True, "fp32_precision": precision})
    with torch.no_grad():
        want = model(*inputs)
    got = compiled(*inputs)
    torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)
    sources = "".join(p.read_text() for p in (tmp_path / "kernels").glob("*.py"))
    assert f'input_precision="{precision}"' in sources


def test_unknown_arch_is_refused() -> None:
    model, inputs = get_model("vit_small_test")
    graph, inputs = kernel_graph(model, inputs)
    with pytest.raises(AccelValueError, match="sm_70"):
        aot.record(graph, inputs, "sm_70")


def test_a_compile_error_names_the_kernel_and_the_first_error() -> None:
    import triton
    import triton.language as tl
    from triton import knobs

    with knobs.runtime.scope():
        knobs.runtime.interpret = False

        @triton.jit
        def broken(x_ptr, BLOCK: tl.constexpr):
            tl.store(x_ptr + tl.arange(0, BLOCK), tl.undefined_function())  # noqa: F821

    rec = Recorder().wrap(broken)
    assert rec.kernel is broken
    from accel.backends.triton.record import LaunchRecord

    model, inputs = get_model("vit_small_test")
    graph, inputs = kernel_graph(model, inputs)
    group = aot.record(graph, inputs, "sm_80")[0].group
    launch = LaunchRecord(group, broken, None, (TensorArg(torch.float32, True, 64),),
                          {"BLOCK": 16}, (1,))
    (info,) = aot.compile_launches([launch], "sm_80", use_cache=False)
    assert info.error and not info.ok
    assert "broken" in _problems([info])[0] and "does not compile" in _problems([info])[0]


def test_roofline_and_model_estimate() -> None:
    infos = _check("vit_small_test", "fp16")
    one = next(i for i in infos if i.kind == "matmul" and i.arch == "sm_90a")
    peaks = aot.DEVICES["H100"]
    assert aot.roofline(one, "H100") == pytest.approx(
        max(one.flops / peaks.tensor_fp16, one.bytes_moved / peaks.bandwidth))
    model, inputs = get_model("vit_small_test")
    graph, _ = kernel_graph(model, inputs, dtype="fp16")
    est = aot.model_estimate([i for i in infos if i.arch == "sm_90a"], graph, "H200")
    assert 0 < est["bytes"] < est["unfused_bytes"]  # fusion saves memory traffic
    assert est["estimate_s"] > 0


def test_cli_prints_a_table_and_a_verdict(capsys) -> None:  # noqa: ANN001
    assert main(["kernels", "vit_small_test", "--arch", "sm_80", "--dtype", "fp16",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "matmul_linear" in out and "roofline estimate" in out
    assert out.strip().splitlines()[-1].startswith("OK: ")


def test_dump_writes_source_ptx_and_sass(tmp_path) -> None:  # noqa: ANN001
    model, inputs = get_model("vit_small_test")
    infos = accel.kernels(model, inputs, arch="sm_90a", dtype="bf16", dump=tmp_path)
    assert infos
    files = {p.suffix for p in (tmp_path / "sm_90a").iterdir()}
    assert {".py", ".ptx", ".sass"} <= files
    sass = "".join(p.read_text() for p in (tmp_path / "sm_90a").glob("attention*.sass"))
    assert "HGMMA" in sass  # the wgmma the PTX promised is in the machine code


# ---- the CI contract: every kernel of the built-in models --------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_small_test", "bert_small_test", "resnet_small_test",
                                  "repvgg_small_test", "mobileone_small_test"])
@pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp32"])
def test_small_models_compile_clean(name: str, dtype: str) -> None:
    _check(name, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["default,tome{r=2}", "default,prune-tokens{keep=0.7}",
                                      "default,token-transform{r=2}",
                                      "default,quantize{mode=int8-dynamic}",
                                      "default,quantize{mode=int4-weight-only,group_size=32}",
                                      "default,quantize{mode=int8-weight-only}"])
@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_token_and_quantized_kernels_compile_clean(pipeline: str, dtype: str) -> None:
    infos = _check("vit_small_test", dtype, pipeline)
    kinds = {i.kind for i in infos}
    assert kinds & {"token", "int8_linear", "weight_only"}, kinds


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_b16", "bert_base"])
def test_base_models_compile_clean_in_fp16(name: str) -> None:
    infos = _check(name, "fp16", batch_size=1)
    mm = [i for i in infos if i.arch == "sm_90a" and i.kind == "matmul" and not i.notes]
    assert mm and all(i.tensor_cores == "wgmma" for i in mm)
