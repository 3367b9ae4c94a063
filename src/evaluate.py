"""Evaluate an exported model: ``python src/evaluate.py --config configs/eval.yaml eval.checkpoint=DIR``.

Writes ``predictions.jsonl``, ``report.json`` and ``report.md`` into the run directory. Same as ``tagfer evaluate``.
"""

import sys

from tagfer.evaluation.commands import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main(sys.argv[1:]))
