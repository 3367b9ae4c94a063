"""Train a stage from a config: ``python src/train.py --config configs/rl.yaml [key=value ...]``.

The stage (sft, rl, baseline, demo) comes from the config's ``stage`` key. Same as ``tagfer train``.
"""

import sys

from tagfer.training.commands import train_main

if __name__ == "__main__":
    sys.exit(train_main(sys.argv[1:]))
