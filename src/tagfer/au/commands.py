"""``tagfer au-cache``: build and inspect the AU cache (heavy imports happen in the handlers)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tagfer.cli_common import add_dry_run_argument, report_dry_run
from tagfer.core.config import CHOICES, SPLITS, AUConfig, DatasetSpec, QualityConfig


def register(subparsers) -> None:
    cache = subparsers.add_parser("au-cache", help="AU cache: build (detect AUs for a dataset), show one entry")
    sub = cache.add_subparsers(dest="au_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="run an AU detector over a dataset and cache the results")
    add_build_arguments(build)
    add_dry_run_argument(build)
    build.set_defaults(func=_build)
    show = sub.add_parser("show", help="print one cached entry (original-image pixels)")
    show.add_argument("--cache", required=True, help="cache directory")
    show.add_argument("--id", required=True, help="image path relative to the dataset root")
    show.add_argument("--json", action="store_true", help="one JSON object: id, face_box, landmarks, au_prob, au_box, ...")
    add_dry_run_argument(show)
    show.set_defaults(func=_show)


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tagfer au-cache build``."""
    defaults = DatasetSpec()
    quality = QualityConfig()
    parser.add_argument("--dataset", required=True, help="rafdb | ferplus | affectnet | imagefolder | synthetic")
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--detector", required=True, choices=CHOICES["au.detector"])
    parser.add_argument("--out", required=True, help="cache directory (e.g. outputs/au_cache/<dataset>-<detector>)")
    parser.add_argument("--split", action="append", choices=SPLITS, help="split to cache (repeatable; default: train, val and test)")
    reader = parser.add_argument_group("dataset reader options")
    reader.add_argument("--image-variant", default=defaults.image_variant, help="rafdb: aligned | original")
    reader.add_argument("--layout", default=defaults.layout, help="ferplus: auto | csv | folders; affectnet: auto | csv | npy")
    reader.add_argument(
        "--label-mode", default=defaults.label_mode, help="ferplus train labels: majority | probability | crossentropy | multi_target"
    )
    reader.add_argument("--num-classes", type=int, default=defaults.num_classes, help="affectnet: 7 or 8")
    reader.add_argument("--num-samples", type=int, default=defaults.num_samples, help="synthetic: faces per split")
    reader.add_argument("--image-size", type=int, default=defaults.image_size, help="synthetic: image side")
    reader.add_argument("--seed", type=int, default=defaults.seed, help="synthetic: generator seed")
    reader.add_argument("--strict", action="store_true", help="a corrupt image is an error instead of a counted skip")
    det = parser.add_argument_group("detector options")
    det.add_argument("--external", help="openface / pyfeat: their output folder or CSV file")
    det.add_argument(
        "--crop-fallback",
        action="store_true",
        help="builtin: fit landmarks on the whole image when dlib finds no face (face-crop datasets)",
    )
    det.add_argument("--box-mode", default="region", choices=("region", "au"), help="region: shared region templates; au: one box per AU")
    run = parser.add_argument_group("build options")
    run.add_argument("--workers", type=int, default=0, help="worker processes (0: in this process)")
    run.add_argument("--shard-size", type=int, default=256, help="images per shard (the unit of resuming)")
    run.add_argument(
        "--detect-max-pixels",
        type=int,
        default=AUConfig.detect_max_pixels,
        help="larger images are decoded reduced to at most this many pixels for the detector (JPEG: in the decoder); "
        "landmarks and boxes are scaled back to original pixels; 0: full size",
    )
    run.add_argument("--overwrite", action="store_true", help="replace an existing cache (or split) instead of refusing")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    qual = parser.add_argument_group("face-quality filter")
    qual.add_argument("--no-quality", action="store_true", help="disable the filter (only 'no face' is dropped)")
    qual.add_argument("--min-sharpness", type=float, default=quality.min_sharpness, help="variance of the Laplacian of the grey face crop")
    qual.add_argument("--min-face-score", type=float, default=quality.min_face_score)
    qual.add_argument("--min-face-size", type=int, default=quality.min_face_size, help="pixels, shorter side of the face box")


def _build(args: argparse.Namespace) -> int:
    if args.dry_run:
        plan = [
            f"{args.dataset} at {args.root} → {args.out}: detector {args.detector}, splits {', '.join(args.split or SPLITS)}, {args.workers} worker(s)"
        ]
        problems = []
        if args.dataset != "synthetic" and not Path(args.root).is_dir():
            problems.append(f"--root {args.root} does not exist")
        if args.detector in ("openface", "pyfeat") and not (args.external and Path(args.external).exists()):
            problems.append(f"--external {args.external} does not exist; the {args.detector} output for this dataset")
        return report_dry_run(f"au-cache build --dataset {args.dataset}", plan, problems)
    return _reported(build_command, args)


def build_command(args: argparse.Namespace) -> int:
    """``tagfer au-cache build``: read each split, hand its records to the build, print a one-line summary per split."""
    from tagfer.au.build import READER_OPTIONS, build_split, dataset_source
    from tagfer.au.detectors import DetectorSpec
    from tagfer.data.readers import read_full_split

    detector = DetectorSpec(args.detector, args.box_mode, args.external, args.crop_fallback)
    quality = QualityConfig(
        enabled=not args.no_quality,
        min_sharpness=args.min_sharpness,
        min_face_score=args.min_face_score,
        min_face_size=args.min_face_size,
    )
    options = {name: getattr(args, name) for name in READER_OPTIONS}
    splits = args.split or _available_splits(args.dataset, args.root, options)
    for split in splits:
        spec = DatasetSpec(name=args.dataset, root=args.root, split=split, **options)
        result = read_full_split(spec, strict=args.strict)
        if result.skipped:
            print(f"{split}: the reader skipped {dict(result.skipped)}")
        if not result.records:
            print(f"{split}: no records, nothing to cache")
            continue
        cache = build_split(
            list(result.records),
            detector,
            args.out,
            split=split,
            source=dataset_source(spec, detector),
            quality=quality,
            shard_size=args.shard_size,
            workers=args.workers,
            detect_max_pixels=args.detect_max_pixels or None,
            strict=args.strict,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        info = cache.meta["splits"][split]
        dropped = len(cache.split_index(split)["dropped"])
        print(f"{split}: {info['rows']} images cached, {info['skipped']} corrupt skipped, {dropped} dropped by quality → {args.out}")
    return 0


def _available_splits(dataset: str, root: str, options: dict) -> list[str]:
    """The splits present on disk (every split for the synthetic reader, which generates them)."""
    from tagfer.data.readers import available_splits, reader

    module = reader(dataset)
    return (
        list(SPLITS)
        if dataset == "synthetic"
        else available_splits(dataset, root, **{k: v for k, v in options.items() if k in module.OPTIONS})
    )


def _show(args: argparse.Namespace) -> int:
    if args.dry_run:
        problems = [] if (Path(args.cache) / "meta.json").is_file() else [f"--cache {args.cache} holds no AU cache (no meta.json)"]
        return report_dry_run("au-cache show", [f"entry {args.id} of {args.cache}"], problems)
    from tagfer.au.cache import show_command

    return _reported(show_command, args)


def _reported(handler, args: argparse.Namespace) -> int:
    """Run ``handler``; a cache that does not fit, a missing cache, an unknown id or (``--strict``) an image
    that cannot be decoded → one message and exit code 2."""
    import sys

    from tagfer.au.cache import CacheMismatchError
    from tagfer.data.images import CorruptImageError

    try:
        return handler(args)
    except (CacheMismatchError, CorruptImageError, FileNotFoundError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"tagfer au-cache: {message}", file=sys.stderr)
        return 2
