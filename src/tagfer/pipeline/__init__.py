"""Records joined with their AU evidence and traces, served as batches: the ``FERDataModule``, the
per-run split reader (each split read once, each AU cache opened once) and the evaluation loop over
test sets that the VLM evaluator and the vision-only baseline share."""
