"""Run the accel benchmark suite: a thin wrapper over ``accel bench`` (same options).

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

import sys

from accel.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
