"""Evaluation: batched generation over test sets, metrics → report.json / report.md, predict, ablations.

* :mod:`~tagfer.evaluation.runner` — ``stage: eval`` (:func:`run_evaluation`), the VLM evaluator;
* shared with the vision-only baseline and so kept below (never imported from training): the per-test-set
  loop :mod:`~tagfer.pipeline.sets`; :mod:`~tagfer.metrics.scoring`, :mod:`~tagfer.metrics.report`,
  :mod:`~tagfer.metrics.predictions` (metrics of one set, the report files, ``predictions.jsonl``);
  :mod:`~tagfer.data.label_space` (trained vs scored classes); :mod:`~tagfer.metrics.published`;
* :mod:`~tagfer.evaluation.inference`, :mod:`~tagfer.evaluation.predict` — loading an export, ``predict``;
* :mod:`~tagfer.evaluation.ablation` — runs → DataFrames/figures for ``notebooks/ablation_analysis.ipynb``.
"""
