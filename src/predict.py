"""Predict with a grounded rationale: ``python src/predict.py IMAGE... --checkpoint DIR``.

Prints the rationale and label per image and saves a PNG with predicted and detector boxes. Same as
``tagfer predict``.
"""

import sys

from tagfer.evaluation.commands import predict_main

if __name__ == "__main__":
    sys.exit(predict_main(sys.argv[1:]))
