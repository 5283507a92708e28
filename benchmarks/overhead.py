"""Per-call runtime overhead of CompiledModel on a tiny model.

Compares, in microseconds per call (median of repeated batches): eager PyTorch, the
reference executor called directly (``AtenExecutor.run``), and the ``CompiledModel``
wrapper (guards, cache lookup, output rebuild) around the same executor. The difference
between the last two is accel's per-call overhead.

    python benchmarks/overhead.py [--calls 2000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import accel


def us_per_call(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Median over ``repeats`` batches of the mean time of one of ``calls`` calls, in µs."""
    for _ in range(max(10, calls // 10)):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    """Measure and print."""
    from accel.host import header

    print(header(), flush=True)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    model.eval()
    x = torch.randn(2, 16)
    compiled = accel.compile(model, (x,), target="reference")
    executor = compiled._first.executable  # noqa: SLF001 - the executor CompiledModel wraps
    with torch.no_grad():
        eager = us_per_call(lambda: model(x), args.calls, args.repeats)
        direct = us_per_call(lambda: executor.run([x]), args.calls, args.repeats)
        wrapped = us_per_call(lambda: compiled(x), args.calls, args.repeats)
    print(f"tiny MLP ({len(compiled.graph)} nodes), batch 2, 1 thread, "
          f"median of {args.repeats} x {args.calls} calls")
    print(f"  eager PyTorch         {eager:8.2f} µs/call")
    print(f"  executor.run directly {direct:8.2f} µs/call")
    print(f"  CompiledModel         {wrapped:8.2f} µs/call")
    print(f"  CompiledModel overhead over the executor: {wrapped - direct:+.2f} µs/call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
