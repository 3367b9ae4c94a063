"""Evaluation: batched generation over test sets, metrics → report.json / report.md, and predict."""
