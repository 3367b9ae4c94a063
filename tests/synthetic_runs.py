"""Config overrides that point a stage at tiny synthetic data, its AU cache, traces and the tiny model.

from synthetic_runs import synthetic_run_overrides
paths = {"data": tmp / "faces", "au": tmp / "au_cache", "traces": tmp / "traces.jsonl", "model": tiny_dir}
cfg = load_config(REPO / "configs" / "sft.yaml", synthetic_run_overrides(paths))
"""

from __future__ import annotations


def synthetic_run_overrides(paths: dict, *, train: int = 8, val: int = 2, test: int = 2) -> list[str]:
    """``data.*`` (``train`` faces with ``paths['traces']``, ``val`` and ``test`` faces under ``paths['data']``),
    ``au.cache_dir``, ``traces.out`` and the tiny model at ``paths['model']``, on CPU without progress bars."""
    face = "{name: synthetic, root: %s, split: %s, num_samples: %d%s}"
    return [
        f"data.train=[{face % (paths['data'], 'train', train, ', traces: ' + str(paths['traces']))}]",
        f"data.val=[{face % (paths['data'], 'val', val, '')}]",
        f"data.test=[{face % (paths['data'], 'test', test, '')}]",
        f"au.cache_dir={paths['au']}",
        f"traces.out={paths['traces']}",
        f"model.name_or_path={paths['model']}",
        "model.build_tiny=false",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
    ]
