"""Does the demo's RL stage help on every seed? The demo run per seed, then its SFT-vs-RL table.

Runs the demo's shared stages once (``demo.stages=[data,au_cache,traces]`` into ``<out>/shared``: the
synthetic faces, their AU cache and the template traces are the same for every seed, and two processes
building them at once would collide on their locks), then ``python src/train.py --config configs/demo.yaml
run_dir=<out>/seed<s> seed=<s> demo.stages=[sft,rl,eval]`` for each seed (``--jobs`` at a time, each on
the demo's one torch thread, under ``nice``; a ``--set demo.stages=…`` replaces the per-seed stages), then reads each run's
``eval/sft/report.json`` and ``eval/rl/report.json`` and prints, per seed, accuracy, parse rate, mean IoU
and hallucination rate of both exports, and whether RL kept its accuracy (within ``--tolerance`` of SFT or
above) and lowered the hallucination rate. A finished seed is reused (the demo resumes its stages).

    python benchmarks/demo_seeds.py --seeds 0 1 2 3 4 --jobs 2 --results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks' shared helpers
from seed_jobs import run_per_seed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METRICS = ("accuracy", "parse_rate", "mean_iou", "hallucination_rate")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="outputs/demo_seeds", help="one demo run directory per seed under it")
    parser.add_argument("--jobs", type=int, default=2, help="demo runs at a time (each uses one thread)")
    parser.add_argument("--tolerance", type=float, default=0.02, help="RL accuracy may be this much below SFT's")
    parser.add_argument("--results", action="store_true", help="append the table to benchmarks/RESULTS.md")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="demo config override (repeatable)")
    return parser.parse_args(argv)


SHARED_STAGES = "demo.stages=[data,au_cache,traces]"
SEED_STAGES = "demo.stages=[sft,rl,eval]"


def demo_command(run_dir: Path, seed: int, overrides: list[str]) -> list[str]:
    return [sys.executable, str(REPO / "src" / "train.py"), "--config", str(REPO / "configs" / "demo.yaml"),
            f"run_dir={run_dir}", f"seed={seed}", "trainer.enable_progress_bar=false", *overrides]  # fmt: skip


def planned_commands(args) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """The shared-stages command (keyed by the first seed) and one demo command per seed, under ``nice``.

    Overrides from ``--set`` come last, so they win; the shared run takes all of them but ``demo.stages``.
    """
    out = Path(args.out)
    first = args.seeds[0]
    data_overrides = [item for item in args.set if not item.startswith("demo.stages=")]
    shared = {first: ["nice", "-n", "5", *demo_command(out / "shared", first, [*data_overrides, SHARED_STAGES])]}
    per_seed = {seed: ["nice", "-n", "5", *demo_command(out / f"seed{seed}", seed, [SEED_STAGES, *args.set])] for seed in args.seeds}
    return shared, per_seed


def run_all(args) -> None:
    """The shared stages once, then the demo for every seed, ``args.jobs`` at a time; a failed run is an error naming its log."""
    shared, per_seed = planned_commands(args)
    run_per_seed(shared, Path(args.out) / "shared", 1, cwd=REPO, what="demo's shared stages")
    run_per_seed(per_seed, Path(args.out), args.jobs, cwd=REPO, what="demo")


def scores(report: Path) -> dict[str, float]:
    (dataset,) = json.loads(report.read_text())["datasets"].values()
    faith = dataset.get("faithfulness") or {}
    return {"accuracy": dataset["accuracy"], "parse_rate": dataset["parse_rate"], **{k: faith.get(k) for k in METRICS[2:]}}


def seed_rows(out: Path, seeds, tolerance: float) -> list[dict]:
    """One row per seed: SFT and RL scores and the two pass criteria."""
    rows = []
    for seed in seeds:
        sft = scores(out / f"seed{seed}" / "eval" / "sft" / "report.json")
        rl = scores(out / f"seed{seed}" / "eval" / "rl" / "report.json")
        rows.append({
            "seed": seed, "sft": sft, "rl": rl,
            "accuracy_kept": rl["accuracy"] >= sft["accuracy"] - tolerance,
            "hallucination_lower": rl["hallucination_rate"] < sft["hallucination_rate"],
        })  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    def pair(row, key) -> str:
        return f"{row['sft'][key]:.3f} → {row['rl'][key]:.3f}"

    lines = [
        "| seed | accuracy SFT → RL | parse rate | mean IoU | hallucination rate | accuracy kept | hallucination lower |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['seed']} | "
            + " | ".join(pair(row, key) for key in METRICS)
            + f" | {'yes' if row['accuracy_kept'] else 'no'} | {'yes' if row['hallucination_lower'] else 'no'} |"
        )
    both = sum(row["accuracy_kept"] and row["hallucination_lower"] for row in rows)
    lines.append(f"\nRL kept the accuracy and lowered the hallucination rate in {both} of {len(rows)} seeds.")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    run_all(args)
    text = table(seed_rows(Path(args.out), args.seeds, args.tolerance))
    print(text)
    if args.results:
        settings = f"`python benchmarks/demo_seeds.py --seeds {' '.join(map(str, args.seeds))}`" + (
            f" with {' '.join(args.set)}" if args.set else ""
        )
        with open(REPO / "benchmarks" / "RESULTS.md", "a") as handle:
            handle.write(f"\n## Demo over seeds (benchmarks/demo_seeds.py)\n\n{settings}.\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
