"""Run the accel benchmark suite and judge it against this project's targets.

The same options as ``accel bench``; the run's results also get the verdicts of
benchmarks/targets.py (in bench.json and a "targets" section of bench.md).

    python benchmarks/run.py --quick              # smoke run, tiny models, about a minute
    python benchmarks/run.py --list               # models and systems
    python benchmarks/run.py --models vit_s16     # one piece of the full run

The full run (10 models x 7 systems, each pair in a fresh subprocess) takes roughly 40-60
minutes on a 2-core CPU; run it piecewise, each piece about 10 minutes, into the same folder
(rows accumulate in benchmarks/results/bench.json; the markdown, plot and targets are rebuilt
from all rows every time):

    python benchmarks/run.py --models vit_s16
    python benchmarks/run.py --models digits_vit,resnet50,repvgg_a0
    python benchmarks/run.py --models bert_base,minilm
    python benchmarks/run.py --models hf_vit_b16
    python benchmarks/run.py --models hf_bert_base,hf_gpt2
    python benchmarks/run.py --models hf_resnet50
"""

import argparse
import sys

from targets import targets

from accel.bench import add_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    """Parse ``accel bench`` options, run, judge against the project's targets."""
    parser = argparse.ArgumentParser(description="accel benchmark suite with the project's "
                                                 "targets")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv), verdicts=targets)


if __name__ == "__main__":
    sys.exit(main())
