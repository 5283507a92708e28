"""The systems a model is run with: eager, torch.compile (inductor), onnxruntime (fp32 and int8
dynamic) and OpenVINO on torch's own ONNX export, and accel's presets (and accel with its
OpenVINO executor forced). ``prepare`` returns a callable on the workload's inputs; it raises
:class:`SystemUnavailable` when the system cannot run here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from accel.bench.suite import Workload
from accel.errors import AccelValueError

Runner = Callable[..., torch.Tensor]


class SystemUnavailable(Exception):  # noqa: N818 - reads as a status, not an error
    """The system cannot run here (missing package, pass or preset); reported as n/a."""


@dataclass(frozen=True)
class System:
    """A way of running a model: ``prepare(workload, device) -> runner``."""

    name: str
    description: str
    prepare: Callable[[Workload, str], Runner]
    quick: bool = True
    """Part of the --quick smoke run (inductor is not: its C++ builds take minutes)."""


def _eager(w: Workload, device: str) -> Runner:
    return w.model


def _inductor(w: Workload, device: str) -> Runner:
    try:
        compiled = torch.compile(w.model)
        with torch.no_grad():
            compiled(*w.inputs)  # compile now, so failures surface here
    except Exception as e:  # noqa: BLE001 - any inductor failure means "not available here"
        raise SystemUnavailable(f"torch.compile (inductor) failed on {device}: "
                                f"{type(e).__name__}: {str(e).splitlines()[0][:160]}") from e
    return compiled


def _onnxruntime() -> object:
    try:
        import onnxruntime
    except ImportError as e:
        raise SystemUnavailable(f"onnxruntime is not installed ({e})") from e
    return onnxruntime


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null (the exporters print graphs from C++)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def export_onnx_torch(w: Workload, path: Path) -> str:
    """torch.onnx.export to ``path``: TorchScript exporter, dynamo exporter as a fallback."""
    errors = []
    for dynamo in (False, True):
        try:
            with _silenced():
                torch.onnx.export(w.model, w.inputs, str(path), dynamo=dynamo,
                                  input_names=[f"input{i}" for i in range(len(w.inputs))])
            return "dynamo" if dynamo else "torchscript"
        except Exception as e:  # noqa: BLE001 - try the other exporter, then report both
            errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:120] if str(e) else ''}")
    raise SystemUnavailable("torch.onnx.export failed (" + "; ".join(errors) + ")")


def _ort_session(path: Path, device: str) -> Runner:
    ort = _onnxruntime()
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise SystemUnavailable("onnxruntime has no CUDAExecutionProvider")
        providers.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()  # same thread count as torch
    sess = ort.InferenceSession(str(path), opts, providers=providers)
    names = [i.name for i in sess.get_inputs()]

    def run(*args: torch.Tensor) -> torch.Tensor:
        feed = {n: a.detach().cpu().numpy() for n, a in zip(names, args, strict=False)}
        return torch.from_numpy(sess.run(None, feed)[0])

    return run


def _ort(w: Workload, device: str, int8: bool) -> Runner:
    _onnxruntime()
    with tempfile.TemporaryDirectory(prefix="accel-bench-onnx-") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        export_onnx_torch(w, fp32)
        if not int8:
            return _ort_session(fp32, device)
        from onnxruntime.quantization import QuantType, quantize_dynamic

        q = Path(tmp) / "model.int8.onnx"
        try:
            with _silenced():
                quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QInt8)
        except Exception as e:  # noqa: BLE001 - report, don't crash
            raise SystemUnavailable(f"onnxruntime quantize_dynamic failed: "
                                    f"{type(e).__name__}: {str(e)[:160]}") from e
        return _ort_session(q, device)


OPENVINO_MISSING = "openvino is not installed (optional: pip install 'accel[openvino]')"


def _openvino() -> object:
    try:
        import openvino
    except ImportError as e:
        raise SystemUnavailable(f"{OPENVINO_MISSING} ({e})") from e
    return openvino


def _ov(w: Workload, device: str) -> Runner:
    """OpenVINO's CPU plugin on the same torch.onnx.export as the onnxruntime systems."""
    ov = _openvino()
    if device != "cpu":
        raise SystemUnavailable(f"the OpenVINO system runs on the CPU only, not {device}")
    core = ov.Core()  # type: ignore[attr-defined]
    # same thread count as torch and ort; f32 as the fp32 peers (on bf16 hosts OpenVINO's
    # default would run the model in bf16)
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
              "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="accel-bench-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx_torch(w, path)
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()
    names = [port.get_any_name() for port in compiled.inputs]
    by_name = all(n.startswith("input") and n[len("input"):].isdigit() for n in names)

    def run(*args: torch.Tensor) -> torch.Tensor:
        arrays = [a.detach().cpu().numpy() for a in args]
        # an input the export dropped (unused) has no port: feed the others by name
        feed = ({n: arrays[int(n[len("input"):])] for n in names} if by_name
                else dict(zip(names, arrays, strict=False)))
        request.infer(feed)
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    return run


def _accel_openvino(w: Workload, device: str) -> Runner:
    """accel's default preset with the CPU target's OpenVINO executor forced."""
    import accel

    if device != "cpu":
        raise SystemUnavailable(f"accel's OpenVINO executor runs on the CPU only, not {device}")
    if importlib.util.find_spec("openvino") is None:
        raise SystemUnavailable(OPENVINO_MISSING)
    try:
        compiled = accel.compile(w.model, w.inputs, pipeline="default", target="cpu",
                                 calibration=w.calibration or None, name="default-openvino",
                                 options={"executor": "openvino"})
    except AccelValueError as e:  # an accel without the executor: n/a, not a failure
        raise SystemUnavailable(f"accel rejects options={{'executor': 'openvino'}}: "
                                f"{str(e).splitlines()[0][:160]}") from e
    with torch.no_grad():
        compiled(*w.inputs)  # specialize now, so compile time is counted here
    return compiled


def _accel(preset: str) -> Callable[[Workload, str], Runner]:
    def prepare(w: Workload, device: str) -> Runner:
        import accel
        from accel.passes import PRESETS, parse_pipeline

        if preset not in PRESETS:
            raise SystemUnavailable(f"preset '{preset}' is not defined")
        try:
            parse_pipeline(preset)
        except AccelValueError as e:
            raise SystemUnavailable(f"preset '{preset}': {e}") from e
        compiled = accel.compile(w.model, w.inputs, pipeline=preset, target=device,
                                 calibration=w.calibration or None, name=preset)
        with torch.no_grad():
            compiled(*w.inputs)  # specialize now, so compile time is counted here
        return compiled

    return prepare


SYSTEMS: dict[str, System] = {s.name: s for s in [
    System("eager", "PyTorch eager, fp32", _eager),
    System("inductor", "torch.compile, default backend (inductor)", _inductor, quick=False),
    System("ort-fp32", "onnxruntime on torch.onnx.export, fp32",
           lambda w, d: _ort(w, d, int8=False)),
    System("ort-int8", "onnxruntime, quantize_dynamic int8 weights",
           lambda w, d: _ort(w, d, int8=True)),
    System("openvino", "OpenVINO CPU (latency hint, f32) on torch.onnx.export, fp32",
           _ov),
    System("accel-default", "accel preset default (lossless)", _accel("default")),
    System("accel-fast", "accel preset fast (default + int8 dynamic quantization)",
           _accel("fast")),
    System("accel-fastest", "accel preset fastest (fast + token reduction)", _accel("fastest")),
    System("accel-openvino", "accel preset default, CPU target's OpenVINO executor forced",
           _accel_openvino),
]}
"""Every system, in report order."""


def get_system(name: str) -> System:
    """The system called ``name``; the error lists the choices."""
    if name not in SYSTEMS:
        raise AccelValueError(f"unknown benchmark system {name!r}; choose from "
                              f"{', '.join(SYSTEMS)}")
    return SYSTEMS[name]

