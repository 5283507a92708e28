"""``accel export``: write a built-in model's optimized graph as ONNX."""

from __future__ import annotations

import argparse

from accel.cli import command


@command("export", "export a built-in model's optimized graph to ONNX")
def _export(args: argparse.Namespace) -> int:
    from accel.backends.onnx.exporter import DEFAULT_OPSET
    from accel.export import export_onnx
    from accel.models import get_model

    model, inputs = get_model(args.model, batch_size=args.batch_size)
    opset = DEFAULT_OPSET if args.opset is None else args.opset
    path = export_onnx(model, inputs, args.output, pipeline=args.pipeline, opset=opset,
                       dynamic_batch=not args.static_batch,
                       dynamic_shapes="auto" if args.dynamic == "auto" else None)
    size_mb = path.stat().st_size / 2**20
    kind = ("static" if args.static_batch else "dynamic batch") if args.dynamic != "auto" \
        else "dynamic batch and sequence"
    print(f"wrote {path} ({size_mb:.1f} MiB, opset {opset}, {kind})")
    return 0


@_export.args
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="built-in model name (see accel models)")
    p.add_argument("-o", "--output", required=True, help="path of the .onnx file to write")
    p.add_argument("--pipeline", default="default", help="pass pipeline spec")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default: accel's, 18; 17 for older runtimes)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--static-batch", action="store_true", help="do not mark dim 0 symbolic")
    p.add_argument("--dynamic", choices=["batch", "auto"], default="batch",
                   help="dynamic axes: batch (dim 0), or auto (also dim 1 of token inputs)")
