"""The dataset registry and the one entry point the project reads datasets through.

``read_dataset(spec)`` reads one split of one dataset (a :class:`tagfer.core.config.DatasetSpec` or its
``DictConfig``) with the reader registered under ``spec.name``, then

1. drops duplicated ids — the **last** row of an id wins and the earlier ones are counted as
   ``duplicate_id`` (FER+ names a few images twice; its generation script overwrites the earlier image
   with the later one, so the last row is the one whose image is on disk);
2. under ``strict=True``, raises :class:`DatasetLayoutError` when a skip signals a damaged copy
   (:data:`~tagfer.data.reader_base.DAMAGE_REASONS`: rows naming missing images, duplicated ids);
   protocol skips (FERPlus not-a-face / unknown rows, AffectNet codes 8–10) are always just counted;
3. keeps only ``spec.classes`` when given (the rest counted as ``not_in_classes``);
4. keeps the first ``spec.limit`` records when given (``notes["limited_from"]`` = the count before).

:func:`read_full_split` reads the whole split a spec names (``limit`` and ``classes`` ignored: what the AU
cache covers) and :func:`select_records` derives the spec's own records from it, so that one run reads
each split once (:class:`tagfer.pipeline.splits.SplitReader`).

Skip counts are logged. Reader-specific options (``image_variant``, ``layout``, ``label_mode``,
``num_classes``, ``num_samples``, ``image_size``, ``seed``) are passed to the readers that use them.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from types import ModuleType

from tagfer.core.classes import CLASS_INDEX, class_subset
from tagfer.core.config import ConfigError, DatasetSpec
from tagfer.data import affectnet, ferplus, imagefolder, rafdb, synthetic
from tagfer.data.reader_base import DAMAGE_REASONS, DatasetLayoutError, ReadResult, require_dir

log = logging.getLogger(__name__)

READERS: dict[str, ModuleType] = {module.NAME: module for module in (rafdb, ferplus, affectnet, imagefolder, synthetic)}

__all__ = [
    "READERS",
    "DatasetLayoutError",
    "ReadResult",
    "available_splits",
    "check_damage",
    "read_dataset",
    "read_full_split",
    "read_split",
    "reader",
    "select_records",
]


def reader(name: str) -> ModuleType:
    """The reader module registered under ``name``."""
    if name not in READERS:
        raise ConfigError(f"unknown dataset reader {name!r}; expected one of {list(READERS)}")
    return READERS[name]


def _checked_root(name: str, root) -> tuple[ModuleType, Path]:
    module = reader(name)
    root = Path(root)
    if module is not synthetic:  # the synthetic reader creates its root
        require_dir(root, f"{name} dataset root", module.LAYOUT)
    return module, root


def _check_options(module: ModuleType, options: dict) -> None:
    unknown = sorted(set(options) - set(module.OPTIONS))
    if unknown:
        raise ConfigError(f"dataset reader {module.NAME!r} takes options {list(module.OPTIONS)}, not {unknown}")


def available_splits(name: str, root, **options) -> list[str]:
    """The splits of dataset ``name`` present under ``root`` (in train, val, test order)."""
    module, root = _checked_root(name, root)
    _check_options(module, options)
    return module.splits(root, **options)


def _drop_duplicate_ids(result: ReadResult) -> None:
    last = {record.id: index for index, record in enumerate(result.records)}
    if len(last) == len(result.records):
        return
    kept = []
    for index, record in enumerate(result.records):
        if last[record.id] == index:
            kept.append(record)
        else:
            result.skip("duplicate_id", record.id)
    result.records = kept


def read_split(name: str, root, split: str, *, strict: bool = False, **options) -> ReadResult:
    """Records of ``split`` of dataset ``name`` under ``root``: steps 1–2 of the module docstring."""
    module, root = _checked_root(name, root)
    _check_options(module, options)
    result = module.read(root, split, **options)
    _drop_duplicate_ids(result)
    if strict:
        check_damage(result, name, split, root)
    if result.skipped:
        log.info("%s/%s: %d records, skipped %s", name, split, len(result.records), result.skipped)
    return result


def check_damage(result: ReadResult, name: str, split: str, root) -> None:
    """:class:`DatasetLayoutError` when a skip of ``result`` signals a damaged copy (strict mode, step 2)."""
    damaged = {reason: result.skipped[reason] for reason in DAMAGE_REASONS if reason in result.skipped}
    if damaged:
        examples = {reason: result.skipped_examples[reason] for reason in damaged}
        raise DatasetLayoutError(f"{name} {split} under {root}: {damaged} (strict mode), e.g. {examples}")


def read_dataset(spec, *, strict: bool = False) -> ReadResult:
    """Read the split described by ``spec`` (DatasetSpec or DictConfig); see the module docstring."""
    module = reader(spec.name)
    options = {key: getattr(spec, key) for key in module.OPTIONS}
    return _select(read_split(spec.name, spec.root, spec.split, strict=strict, **options), spec)


def read_full_split(spec, *, strict: bool = False) -> ReadResult:
    """The whole split ``spec`` names (its ``limit`` and ``classes`` ignored).

    For the synthetic reader that is every face of the split on disk, which may be more than the spec's
    ``num_samples`` (a smaller spec reads a prefix of a larger split and shares its AU cache).
    """
    values = {f.name: getattr(spec, f.name) for f in dataclasses.fields(DatasetSpec)}
    full = DatasetSpec(**{**values, "limit": None, "classes": None})
    result = read_dataset(full, strict=strict)  # generates a missing synthetic split
    if spec.name == "synthetic":
        result = read_split("synthetic", spec.root, spec.split, strict=strict, num_samples=None)
    return result


def select_records(full: ReadResult, spec, *, strict: bool = False) -> ReadResult:
    """What :func:`read_dataset` returns for ``spec``, derived from :func:`read_full_split`'s ``full``
    (left unchanged) without reading the dataset again."""
    if strict:
        check_damage(full, spec.name, spec.split, spec.root)
    result = copy.deepcopy(dataclasses.replace(full, records=[]))
    result.records = list(full.records)
    if spec.name == "synthetic" and spec.num_samples is not None:
        result.records = result.records[: int(spec.num_samples)]  # the reader's first num_samples faces
    return _select(result, spec)


def _select(result: ReadResult, spec) -> ReadResult:
    """Steps 3–4 of the module docstring on ``result`` (in place); returns it."""
    if spec.classes:
        try:
            keep = {CLASS_INDEX[name] for name in class_subset(list(spec.classes))}
        except ValueError as err:
            raise ConfigError(f"dataset {spec.name} classes: {err}") from None
        kept = []
        for record in result.records:
            if record.label in keep:
                kept.append(record)
            else:
                result.skip("not_in_classes", record.id)
        result.records = kept
    if spec.limit is not None and len(result.records) > spec.limit:
        result.notes["limited_from"] = len(result.records)
        result.records = result.records[: spec.limit]
    return result
