"""Train (or load) the digits ViT the benchmarks use and print its accuracy.

The task (data splits, recipe, cache) lives in :mod:`accel.bench.digits`, next to the bench
suite that uses it.

    python benchmarks/digits.py
"""

from accel.bench.digits import main

if __name__ == "__main__":
    main()
