"""Evaluation: batched generation over test sets, metrics → report.json / report.md, predict, ablations.

* :mod:`~tagfer.evaluation.runner` — ``stage: eval`` (:func:`run_evaluation`), the VLM evaluator;
* :mod:`~tagfer.evaluation.sets` — the per-test-set loop shared with the vision-only baseline;
* :mod:`~tagfer.evaluation.scoring`, :mod:`~tagfer.evaluation.report`, :mod:`~tagfer.evaluation.predictions`
  — metrics of one set, the report files, ``predictions.jsonl``;
* :mod:`~tagfer.evaluation.label_space` — trained vs scored classes (cross-dataset);
* :mod:`~tagfer.evaluation.published` — published accuracies printed beside real-benchmark results;
* :mod:`~tagfer.evaluation.inference`, :mod:`~tagfer.evaluation.predict` — loading an export, ``predict``;
* :mod:`~tagfer.evaluation.ablation` — runs → DataFrames/figures for ``notebooks/ablation_analysis.ipynb``.
"""
