"""The ``accel`` command line: demo, compile, show, passes (more subcommands register here)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from accel.errors import AccelError
from accel.timing import median_ms

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None],
                          Callable[[argparse.Namespace], int], str]] = {}
"""Subcommands: name -> (add arguments, run, help)."""


def command(name: str, help: str) -> Callable:  # noqa: A002
    """Register a subcommand: decorate ``run(args) -> exit code``; ``.args`` adds options."""

    def deco(run: Callable[[argparse.Namespace], int]) -> Callable:
        def set_args(fn: Callable[[argparse.ArgumentParser], None]) -> Callable:
            COMMANDS[name] = (fn, run, help)
            return fn

        COMMANDS[name] = (lambda p: None, run, help)
        run.args = set_args  # type: ignore[attr-defined]
        return run

    return deco


def _load_model(name: str, batch_size: int | None) -> tuple[torch.nn.Module, tuple]:
    from accel.models import get_model

    return get_model(name, batch_size=batch_size)


@command("demo", "compile a built-in model, print the report, check numerics and latency")
def _demo(args: argparse.Namespace) -> int:
    import accel

    model, inputs = _load_model(args.model, args.batch_size)
    print(f"accel demo: {args.model}, inputs {[tuple(t.shape) for t in inputs]}")
    compiled = accel.compile(model, inputs, pipeline=args.pipeline, target=args.target,
                             name=args.model)
    print(compiled.report)
    with torch.no_grad():
        ref = model(*inputs)
        out = compiled(*inputs)
        err = (ref - out).abs().max().item()
        print(f"\nnumerics: max |eager - accel| = {err:.3g}")
        eager_ms = median_ms(lambda: model(*inputs), args.iters)
        accel_ms = median_ms(lambda: compiled(*inputs), args.iters)
    print(f"latency (median of {args.iters}): eager {eager_ms:.2f} ms, accel {accel_ms:.2f} ms, "
          f"speedup {eager_ms / accel_ms:.2f}x")
    return 0


@_demo.args
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="repvgg_a0", help="built-in model (see accel models)")
    p.add_argument("--pipeline", default="default")
    p.add_argument("--target", default="auto")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--iters", type=int, default=10)


@command("compile", "compile a built-in model with a pipeline and print the report")
def _compile(args: argparse.Namespace) -> int:
    import accel

    model, inputs = _load_model(args.model, args.batch_size)
    compiled = accel.compile(model, inputs, pipeline=args.pipeline, target=args.target,
                             name=args.model, dump=args.dump, debug=args.debug)
    print(compiled.report)
    return 0


@_compile.args
def _compile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="built-in model name (see accel models)")
    p.add_argument("--pipeline", default="default", help="pass pipeline spec")
    p.add_argument("--target", default="auto")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--dump", default=None, help="directory for the graph after every pass")
    p.add_argument("--debug", action="store_true", help="verify the graph after every pass")


@command("show", "print a model's IR after capture (and, with --passes, after each pass)")
def _show(args: argparse.Namespace) -> int:
    from accel.frontend import capture
    from accel.passes import PassContext, parse_pipeline, run_pipeline

    model, inputs = _load_model(args.model, args.batch_size)
    graph = capture(model, inputs, args.model)
    print(f"# ---- after capture ----\n{graph.python()}")
    if args.passes:
        ctx = PassContext(example_inputs=inputs)
        for step in parse_pipeline(args.pipeline):
            graph, (rec,) = run_pipeline(graph, [step], ctx)
            note = "; ".join(rec.notes) or ("changed" if rec.changed else "no change")
            print(f"# ---- after {step} ({note}) ----\n{graph.python()}")
    return 0


@_show.args
def _show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model")
    p.add_argument("--passes", action="store_true", help="also print after each pass")
    p.add_argument("--pipeline", default="default")
    p.add_argument("--batch-size", type=int, default=None)


@command("passes", "list passes, their options, and the presets")
def _passes(args: argparse.Namespace) -> int:
    from accel.passes import PRESETS, all_passes

    for name, info in sorted(all_passes().items()):
        kind = "lossy" if info.lossy else "lossless"
        print(f"{name}  ({kind})  {info.doc}")
        for opt in info.options.values():
            print(f"    {opt.describe()}")
    print("\npresets:")
    for name, preset in PRESETS.items():
        print(f"  {name:<10} {preset.doc}\n             = {preset.spec or '(nothing)'}")
    return 0


@command("models", "list the built-in models")
def _models(args: argparse.Namespace) -> int:
    from accel.models import MODELS

    for name, spec in MODELS.items():
        print(f"{name:<22} {spec.description}")
    return 0


@command("info", "show the host (CPU, cores, ISA features) and the installed runtimes")
def _info(args: argparse.Namespace) -> int:
    import importlib.metadata as md

    from accel import env
    from accel.host import host

    profile = host()
    print(f"host:         {profile.describe()}")
    print(f"features:     {', '.join(sorted(profile.isa)) or 'none detected'}")
    print(f"int8:         u8 x s8 integer matmul {'exact' if profile.u8s8_exact else 'saturates'}"
          f" here; int8 weights lower as {'s8' if profile.u8s8_exact else 'u8 (zero point 128)'}")
    print(f"bf16:         {'native' if profile.bf16 else 'emulated'}")
    print(f"cuda:         {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
    for pkg in ("accel", "torch", "onnxruntime", "openvino", "triton", "onnx", "transformers"):
        try:
            print(f"{pkg + ':':<14}{md.version(pkg)}")
        except md.PackageNotFoundError:
            print(f"{pkg + ':':<14}not installed")
    print(f"cache:        {env.cache_dir()}")
    return 0


@command("kernels", "compile every Triton kernel of a model ahead of time for a GPU "
                    "architecture (no GPU needed): registers, spills, shared memory, wgmma")
def _kernels(args: argparse.Namespace) -> int:
    from accel.api import kernel_graph
    from accel.backends.triton import aot

    args.arch = args.arch or ["sm_90a"]
    model, inputs = _load_model(args.model, args.batch_size)
    graph, inputs = kernel_graph(model, inputs, args.pipeline, args.dtype)
    infos = []
    for arch in args.arch:
        launches = aot.record(graph, inputs, arch, args.fp32_precision)
        infos += aot.compile_launches(launches, arch, dump=args.dump,
                                      progress=None if args.quiet else aot.print_progress)
    print(aot.table(infos, args.device))
    est = aot.model_estimate([i for i in infos if i.arch == args.arch[0]], graph, args.device)
    print(f"\nroofline estimate on {aot.DEVICES[args.device].name} ({args.arch[0]} kernels; "
          f"an estimate from data-sheet peaks, not a measurement): "
          f"{est['estimate_s'] * 1e6:.1f} us for {int(est['launches'])} launches, "
          f"{est['bytes'] / 1e6:.1f} MB moved; unfused graph "
          f"{est['unfused_bytes'] / 1e6:.1f} MB ({est['unfused_bandwidth_s'] * 1e6:.1f} us at "
          "full bandwidth)")
    if args.dump:
        print(f"sources, PTX and SASS in {args.dump}/<arch>/")
    print(aot.verdict(infos))
    return 0 if aot.verdict(infos).startswith("OK") else 1


@_kernels.args
def _kernels_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="built-in model name (see accel models)")
    p.add_argument("--arch", action="append", choices=["sm_80", "sm_90a"],
                   help="architecture (repeat for several; default sm_90a)")
    p.add_argument("--pipeline", default="default")
    p.add_argument("--dtype", default=None, choices=["fp16", "bf16", "fp32"],
                   help="cast the model and its float inputs first")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--fp32-precision", default=None, choices=["ieee", "tf32", "tf32x3"],
                   help="float32 dots (default: torch.get_float32_matmul_precision())")
    p.add_argument("--device", default="H100", choices=["H100", "H200", "A100"],
                   help="device of the roofline estimate")
    p.add_argument("--dump", default=None, help="write Triton source, PTX and SASS here")
    p.add_argument("--quiet", action="store_true", help="no per-compile progress lines")
    p.set_defaults(arch=None)


def _load_plugins() -> None:
    """Import modules that add subcommands (bench, export, bisect) when present."""
    import importlib

    for mod in ("accel.exporters_cli", "accel.bench", "accel.debug"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``accel`` command."""
    _load_plugins()
    parser = argparse.ArgumentParser(prog="accel", description="accel: a compiler for PyTorch "
                                     "models")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, (add_args, run, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_args(p)
        p.set_defaults(run=run)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except AccelError as e:
        print(f"accel {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run through the imported module so plugins register into the same COMMANDS table.
    from accel.cli import main as _main

    sys.exit(_main())
