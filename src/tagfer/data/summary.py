"""``tagfer data summarize``: split sizes, class counts and skip counts of a dataset on disk.

JSON form (``--json``)::

    {"dataset": NAME,
     "splits": {SPLIT: {"total": N, "classes": {CLASS: N, ...}}, ...},   # all 8 canonical classes, in order
     "skipped": {REASON: N, ...}}                                         # summed over the splits
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from tagfer.core.classes import CLASS_NAMES
from tagfer.data.readers import available_splits, read_split, reader


def summarize(name: str, root, **options) -> dict:
    """The summary dict of every split of dataset ``name`` under ``root``.

    ``options`` are reader options (``layout``, ``label_mode``, ...); those the reader does not take are
    ignored. A generating reader (synthetic) is read as it is on disk (``num_samples=None``).
    """
    module = reader(name)
    options = {key: value for key, value in options.items() if key in module.OPTIONS and value is not None}
    read_options = {**options, "num_samples": None} if "num_samples" in module.OPTIONS else options
    splits: dict[str, dict] = {}
    skipped: Counter = Counter()
    for split in available_splits(name, root, **options):
        result = read_split(name, root, split, **read_options)
        counts = Counter(record.label for record in result.records)
        splits[split] = {"total": len(result.records), "classes": {c: counts.get(i, 0) for i, c in enumerate(CLASS_NAMES)}}
        skipped.update(result.skipped)
    return {"dataset": name, "splits": splits, "skipped": dict(skipped)}


def format_table(summary: dict) -> str:
    """A plain-text table: one row per class, one column per split, then the skip counts."""
    splits = list(summary["splits"])
    lines = [f"{summary['dataset']}", f"{'class':<12}" + "".join(f"{s:>10}" for s in splits)]
    for name in CLASS_NAMES:
        lines.append(f"{name:<12}" + "".join(f"{summary['splits'][s]['classes'][name]:>10}" for s in splits))
    lines.append(f"{'total':<12}" + "".join(f"{summary['splits'][s]['total']:>10}" for s in splits))
    for reason, count in summary["skipped"].items():
        lines.append(f"skipped {reason}: {count}")
    return "\n".join(lines)


def summarize_command(args: argparse.Namespace) -> int:
    summary = summarize(
        args.dataset,
        args.root,
        layout=args.layout,
        label_mode=args.label_mode,
        num_classes=args.num_classes,
        image_variant=args.image_variant,
    )
    print(json.dumps(summary) if args.json else format_table(summary))
    return 0
