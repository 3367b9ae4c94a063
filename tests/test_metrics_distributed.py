"""The metrics' states reduce across ranks: two ranks (merged states, then real gloo processes) give the
single-process result. Light imports on purpose: the spawned ranks import this module."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.trace import Trace, TraceStep, parse_trace, render_trace
from tagfer.core.vocabulary import AU_LIST, AU_REGION, REGIONS
from tagfer.metrics import NO_ANSWER, ExpressionClassificationMetrics, GroundingFaithfulness, ParseRate, to_json_ready

CLASSES = CLASS_NAMES[:7]


def random_box(rng: random.Random) -> tuple[int, int, int, int]:
    x, y = rng.randint(0, 100), rng.randint(0, 100)
    return x, y, x + rng.randint(1, 60), y + rng.randint(1, 60)


def random_completion(rng: random.Random) -> str:
    """A rendered trace over random regions and AUs; some truncated, some garbage."""
    steps = []
    for region in rng.sample(REGIONS, rng.randint(1, 3)):
        aus = tuple(au for au in AU_LIST if AU_REGION[au] == region and rng.random() < 0.6)
        steps.append(TraceStep(region, aus, "seen", random_box(rng)))
    cited = tuple(au for step in steps for au in step.aus)
    text = render_trace(Trace("a face", tuple(steps), cited, rng.choice(CLASS_NAMES)), think_tags=rng.random() < 0.5)
    kind = rng.random()
    if kind < 0.1:
        return "garbage " * rng.randint(0, 3)
    if kind < 0.2:
        return text[: rng.randint(0, len(text))]
    return text


def inputs(n: int = 301, seed: int = 1):
    """Classification indices (with −1) and grounding inputs for ``n`` samples."""
    rng = random.Random(seed)
    target = [rng.randrange(len(CLASSES)) for _ in range(n)]
    preds = [NO_ANSWER if rng.random() < 0.15 else (t if rng.random() < 0.5 else rng.randrange(len(CLASSES))) for t in target]
    completions = [random_completion(rng) for _ in range(n)]
    au_probs = [{au: rng.random() for au in rng.sample(AU_LIST, rng.randint(0, 8))} for _ in range(n)]
    au_boxes = [{au: random_box(rng) for au in probs if rng.random() < 0.9} for probs in au_probs]
    return preds, target, completions, au_probs, au_boxes


def shard(values: list, rank: int) -> list:
    """Uneven two-way split: rank 0 gets the first 37 %, rank 1 the rest."""
    cut = int(len(values) * 0.37)
    return values[:cut] if rank == 0 else values[cut:]


def fresh_metrics(**kwargs):
    return ExpressionClassificationMetrics(CLASSES, **kwargs), ParseRate(**kwargs), GroundingFaithfulness(**kwargs)


def update_all(metrics, preds, target, completions, au_probs, au_boxes) -> None:
    """Two updates of uneven size into (classification, parse rate, grounding)."""
    classification, parse_rate, grounding = metrics
    cut = max(1, len(preds) // 3)
    for part in (slice(0, cut), slice(cut, None)):
        classification.update(torch.tensor(preds[part]), torch.tensor(target[part]))
        parse_rate.update([parse_trace(c) for c in completions[part]])
        grounding.update(completions[part], au_probs[part], au_boxes[part])


def computed(metrics) -> dict[str, float]:
    """Every computed value flattened to ``{"path": number}`` (None → NaN) for ``pytest.approx``."""
    nested = {"classification": metrics[0].compute(), "parse_rate": metrics[1].compute(), "faithfulness": metrics[2].compute()}
    flat: dict[str, float] = {}

    def walk(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}/{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}/{index}")
        elif not isinstance(value, str):
            flat[path] = math.nan if value is None else float(value)

    walk(to_json_ready(nested), "")
    return flat


@pytest.fixture(scope="module")
def single_process_result() -> dict[str, float]:
    metrics = fresh_metrics()
    update_all(metrics, *inputs())
    result = computed(metrics)
    assert result["/classification/n"] == 301 and not math.isnan(result["/faithfulness/au_precision"])
    return result


def test_merged_states_equal_single_process(single_process_result):
    ranks = [fresh_metrics(), fresh_metrics()]
    for rank, metrics in enumerate(ranks):
        update_all(metrics, *(shard(v, rank) for v in inputs()))
    # (compute() is cached and merge_state does not clear that cache: compare shards on other instances)
    shard_alone = fresh_metrics()
    update_all(shard_alone, *(shard(v, 0) for v in inputs()))
    assert computed(shard_alone) != pytest.approx(single_process_result, nan_ok=True)
    for merged, other in zip(ranks[0], ranks[1]):
        merged.merge_state(other)
    assert computed(ranks[0]) == pytest.approx(single_process_result, nan_ok=True)


def _rank_worker(rank: int, world_size: int, rendezvous: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size, timeout=timedelta(seconds=60))
    try:
        rank_inputs = [shard(v, rank) for v in inputs()]
        synced, local = fresh_metrics(), fresh_metrics(sync_on_compute=False)
        update_all(synced, *rank_inputs)
        update_all(local, *rank_inputs)
        torch.save({"synced": computed(synced), "local": computed(local)}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_gloo_two_ranks_equal_single_process(tmp_path, single_process_result):
    # never fork pytest itself (a forked child of a process whose thread pools already ran can deadlock):
    # a fresh forkserver imports the heavy modules once, then forks both ranks from it
    mp.get_context("forkserver").set_forkserver_preload(["tagfer.metrics", "torch.distributed"])
    mp.start_processes(_rank_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True, start_method="forkserver")
    for rank in range(2):
        results = torch.load(tmp_path / f"rank{rank}.pt")
        assert results["synced"] == pytest.approx(single_process_result, nan_ok=True)
        assert results["local"] != pytest.approx(single_process_result, nan_ok=True)  # the shard alone differs
