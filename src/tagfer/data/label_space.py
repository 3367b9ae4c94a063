"""Which classes a test set is scored over, and which classes a trained model answers with.

Cross-dataset evaluation (train on AffectNet-8, test on RAF-DB) keeps two label spaces apart:

* the **model's classes** — the classes it was trained on (``classes`` in the export's
  ``tagfer_export.json``, all 8 when it records none). The prompt lists these, so the model is asked
  the question it learnt.
* the **test set's classes** — ``spec.classes`` when the spec restricts them, else the dataset's own
  label set (:func:`scored_classes`). Metrics use these; an answer outside them (the model says
  "contempt" on RAF-DB) lands in the no-answer column (:mod:`tagfer.metrics.classification`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tagfer.core.classes import CLASS_NAMES, class_subset
from tagfer.data.readers import read_dataset, reader


def trained_classes(export_meta: Mapping) -> tuple[str, ...]:
    """The classes recorded in an export's metadata (canonical order), all 8 when none are recorded."""
    recorded = export_meta.get("classes")
    if not recorded:
        return CLASS_NAMES
    try:
        return class_subset(list(recorded))
    except ValueError as err:
        raise ValueError(f"tagfer_export.json 'classes': {err}") from None


def training_classes(data_cfg) -> tuple[str, ...]:
    """The label space a model is trained on: the union of the ``data.train`` specs' label sets
    (:func:`scored_classes`: ``classes`` when a spec restricts them, else the dataset's own), in canonical
    order. Datasets whose label set is read from disk (the reader's ``LABEL_SET_FROM_RECORDS``) are read here."""
    chosen: set[str] = set()
    for spec in data_cfg.train:
        needs_records = not spec.classes and reader(spec.name).LABEL_SET_FROM_RECORDS
        labels = [record.label for record in read_dataset(spec).records] if needs_records else []
        chosen.update(scored_classes(spec, labels))
    return class_subset(sorted(chosen))


def scored_classes(spec, labels: Iterable[int]) -> tuple[str, ...]:
    """The label set a test split of ``spec`` is scored over, in canonical order.

    ``spec.classes`` when given; otherwise the dataset's own label set, as its reader states it
    (``label_set``): RAF-DB's 7 classes, FERPlus's 8, AffectNet-``num_classes``, the synthetic dataset's
    generated classes (its ``manifest.json``), and for an image folder the classes of its class folders
    (``labels``, the canonical indices of its records).
    """
    if spec.classes:
        return class_subset(list(spec.classes))
    return reader(spec.name).label_set(spec, labels)
