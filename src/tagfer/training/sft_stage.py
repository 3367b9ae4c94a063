"""``stage: sft`` — ``python src/train.py --config configs/sft.yaml``.

1. seed everything, save the resolved config into ``<run_dir>/config.yaml``;
2. load the VLM (building the tiny model when configured) and prepare the policy (vision tower frozen,
   LoRA or full fine-tune);
3. make sure every training dataset has its trace file: template traces are built when missing (in the
   datamodule's ``prepare_data``, so one process per node writes them under DDP); teacher traces must be
   built beforehand with ``tagfer traces build --source teacher``;
4. ``Trainer.fit`` on the FERDataModule (resuming from ``<run_dir>/checkpoints/last.ckpt`` by default);
5. export the adapter/model + processor to ``<run_dir>/export`` for the RL stage, evaluation and predict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from tagfer.data.label_space import training_classes
from tagfer.data.trace_boxes import TraceBoxMapper
from tagfer.models.collate import PromptCollator, SFTCollator
from tagfer.models.loader import load_vlm
from tagfer.models.policy import count_parameters, prepare_policy
from tagfer.models.space import ModelSpace
from tagfer.pipeline.datamodule import FERDataModule
from tagfer.pipeline.splits import SplitReader
from tagfer.training.sft_module import SFTModule
from tagfer.training.stage_run import fit_and_export, start_run
from tagfer.training.trainer import build_trainer

log = logging.getLogger(__name__)


def missing_traces(cfg) -> list:
    """The ``data.train`` specs whose trace file does not exist yet.

    Raises FileNotFoundError when some are missing and ``traces.source`` is not "template": teacher traces
    need a teacher model and are never built implicitly by a training run.
    """
    missing = [spec for spec in cfg.data.train if spec.traces and not Path(spec.traces).is_file()]
    if missing and cfg.traces.source != "template":
        names = ", ".join(str(spec.traces) for spec in missing)
        raise FileNotFoundError(
            f"trace files {names} do not exist; build them first: tagfer traces build --source teacher --config <this config>"
        )
    return missing


def ensure_traces(cfg, build_traces: Callable[..., object] | None, splits: SplitReader | None = None) -> None:
    """Build the template trace files that ``data.train`` names and that do not exist yet.

    ``build_traces``: :func:`tagfer.reasoning.build.build_traces`, handed in by the entry point (training
    does not import the reasoning builders); None: a missing trace file is an error. ``splits``: the run's
    split reader, so the build reads no split the DataModule has read already.
    """
    missing = missing_traces(cfg)
    if not missing:
        return
    if build_traces is None:
        names = ", ".join(str(spec.traces) for spec in missing)
        raise FileNotFoundError(f"trace files {names} do not exist; build them first: tagfer traces build --config <this config>")
    log.info("building template traces for %d training set(s)", len(missing))
    build_traces(cfg, splits=splits)


def run_sft(cfg, *, build_traces: Callable[..., object] | None = None, trainer_overrides: dict | None = None) -> Path:
    """Train and export; returns the export directory (``build_traces``: see :func:`ensure_traces`)."""
    with start_run(cfg) as run_dir:
        if not any(spec.traces for spec in cfg.data.train):
            raise ValueError("data.train has no `traces` file: SFT needs reasoning traces (see configs/data/*.yaml)")
        missing_traces(cfg)  # fail before loading the model when teacher traces are missing

        model, processor, family = load_vlm(cfg.model, for_training=True)
        model = prepare_policy(model, cfg.model)
        log.info("policy: %s", count_parameters(model))
        space = ModelSpace.of(processor, family)
        classes = training_classes(cfg.data)
        think = cfg.traces.think_tags
        splits = SplitReader(cfg.au)  # one read of each split for the DataModule and the trace build
        datamodule = FERDataModule(
            cfg.data,
            cfg.au,
            train_collate=SFTCollator(processor, space, max_length=cfg.sft.max_length, classes=classes, think_tags=think),
            eval_collate=PromptCollator(processor, space, classes=classes, think_tags=think),
            trace_mapper=TraceBoxMapper(space.to_pixels, space.to_model),
            require_traces=True,
            prepare_traces=partial(ensure_traces, cfg, build_traces, splits),
            seed=cfg.seed,
            splits=splits,
        )
        module = SFTModule(model, processor, cfg.sft, convention=space.convention, classes=classes, au_threshold=cfg.au.threshold)
        trainer = build_trainer(cfg, run_dir, **(trainer_overrides or {}))
        return fit_and_export(
            cfg, trainer, module, datamodule, processor, family=family, base_name_or_path=cfg.model.name_or_path, classes=classes
        )
