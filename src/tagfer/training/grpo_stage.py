"""``stage: rl`` — ``python src/train.py --config configs/rl.yaml``.

1. seed everything, save the resolved config;
2. load the SFT export named by ``model.init_from`` and make it the policy. The reference model of the
   KL term is the policy *at the start of RL* (the SFT model), as in TAG and its public recipes:
   * LoRA: the SFT adapter is merged into the base weights and a fresh adapter is trained, so the
     adapter-disabled network is exactly the SFT model (no second copy in memory);
   * full fine-tune: a frozen copy of the SFT model (only when ``rl.beta ≠ 0``);
3. ``Trainer.fit`` of :class:`GRPOModule` with the reward callbacks of ``rl.rewards`` and the typed values
   built here once from ``rl`` (:func:`module_settings`: the :class:`GRPOObjective`, the optimizer settings;
   the rollout sampling settings, :class:`RolloutSampling`), resuming from
   ``<run_dir>/checkpoints/last.ckpt`` by default. With ``engine.backend: vllm`` the rollouts come from a
   vLLM server (:mod:`tagfer.training.engine_rollout`): one launched for the fit, serving the RL base (the
   loaded, merged SFT model, written to ``<run_dir>/vllm/base``) with ``--enable-lora`` and
   ``--logprobs-mode processed_logprobs``, or ``engine.vllm.url`` (a server started that way on the RL
   base; the only choice with several processes). The trained LoRA adapter is pushed to it
   (``<run_dir>/vllm/adapter``) before each rollout that follows an optimizer step. Full fine-tuning
   rolls out with ``hf``: the OpenAI server has no way to take new full weights (TRL's ``vllm-serve``
   does it over NCCL), so ``vllm`` is refused for it;
4. export to ``<run_dir>/export``: the RL adapter over the SFT export (loaded as a chain by
   :func:`tagfer.models.loader.load_vlm`), or the full model.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from peft import PeftModel

from tagfer.data.label_space import training_classes
from tagfer.models.collate import PromptCollator
from tagfer.models.engine import vllm_endpoint
from tagfer.models.generation import eos_token_ids, suppressed_token_ids
from tagfer.models.loader import load_vlm
from tagfer.models.openai_endpoint import ChatClient
from tagfer.models.policy import count_parameters, frozen_reference_copy, prepare_policy
from tagfer.models.space import ModelSpace
from tagfer.models.staging import staged_directory
from tagfer.pipeline.datamodule import FERDataModule
from tagfer.training.engine_rollout import LOGPROBS_MODE_ARGS, VLLMRollouts
from tagfer.training.grpo import GRPOObjective
from tagfer.training.grpo_module import GRPOModule
from tagfer.training.rewards import build_rewards
from tagfer.training.rollout import RolloutSampling
from tagfer.training.stage_run import fit_and_export, start_run
from tagfer.training.trainer import build_trainer

log = logging.getLogger(__name__)


def save_served_base(model, processor, out_dir: Path) -> Path:
    """Write the RL base (``model`` before its RL adapter) and ``processor`` for a vLLM server, atomically."""
    with staged_directory(out_dir, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return out_dir


def load_rl_policy(cfg, *, served_base: Path | None = None):
    """``(policy, processor, family, reference)`` initialised from ``model.init_from`` (see the module docstring);
    with ``served_base`` the RL base is also written there (:func:`save_served_base`).
    :func:`tagfer.training.preflight.preflight`, run by :func:`start_run` first, checks that it is set and exists."""
    model, processor, family = load_vlm(cfg.model, for_training=True)
    if isinstance(model, PeftModel) and cfg.model.finetune == "lora":
        model = model.merge_and_unload()  # the SFT model becomes the base: the disabled adapter = reference
    if served_base is not None:
        save_served_base(model, processor, served_base)
    policy = prepare_policy(model, cfg.model)
    reference = frozen_reference_copy(policy) if cfg.rl.beta != 0.0 else None
    return policy, processor, family, reference


def grpo_objective(rl_cfg) -> GRPOObjective:
    """The GRPO objective of the ``rl`` section (checked once, here; :class:`GRPOObjective` names the key)."""
    return GRPOObjective(
        loss_type=rl_cfg.loss_type,
        epsilon_low=rl_cfg.epsilon_low,
        epsilon_high=rl_cfg.epsilon_high,
        beta=rl_cfg.beta,
        kl_clamp=rl_cfg.kl_clamp,
        scale_rewards=rl_cfg.scale_rewards,
        max_completion_length=rl_cfg.max_new_tokens,
        num_iterations=rl_cfg.num_iterations,
        gradient_accumulation_steps=rl_cfg.gradient_accumulation_steps,
        logprob_micro_batch=rl_cfg.logprob_micro_batch,
    )


def module_settings(rl_cfg) -> dict:
    """The typed values :class:`GRPOModule` takes from the ``rl`` section: the objective, the rollout's
    sampling settings, the optimizer settings (a plain :class:`tagfer.core.config.OptimConfig`), the skip limit
    and the logged completions."""
    optim = rl_cfg.optim
    return {
        "objective": grpo_objective(rl_cfg),
        "sampling": RolloutSampling.of(rl_cfg),
        "optim": OmegaConf.to_object(optim) if isinstance(optim, DictConfig) else optim,
        "max_consecutive_skips": rl_cfg.max_consecutive_skips,
        "log_completions": rl_cfg.log_completions,
    }


@contextmanager
def vllm_rollouts(cfg, run_dir: Path, policy, processor, prompt: str, sampling: RolloutSampling) -> Iterator[VLLMRollouts]:
    """The rollout engine of ``engine.vllm`` for the ``with`` block: a server launched on
    ``<run_dir>/vllm/base`` (stopped on exit), or ``engine.vllm.url``."""
    vllm_cfg = OmegaConf.to_object(cfg.engine.vllm)
    if LOGPROBS_MODE_ARGS[0] not in vllm_cfg.args:
        vllm_cfg = dataclasses.replace(vllm_cfg, args=[*vllm_cfg.args, *LOGPROBS_MODE_ARGS])
    rank = max(16, int(cfg.model.lora.r))
    with vllm_endpoint(vllm_cfg, str(run_dir / "vllm" / "base"), enable_lora=True, max_lora_rank=rank) as settings:
        yield VLLMRollouts(
            ChatClient(dataclasses.replace(settings, model="policy")),
            run_dir / "vllm" / "adapter",
            prompt=prompt,
            sampling=sampling,
            eos_ids=eos_token_ids(policy, processor),
            banned_token_ids=suppressed_token_ids(processor),
        )


def run_grpo(cfg, *, trainer_overrides: dict | None = None) -> Path:
    """Train with GRPO and export; returns the export directory."""
    use_vllm = cfg.engine.backend == "vllm"  # its requirements are checked by start_run (preflight)
    with start_run(cfg) as run_dir, ExitStack() as stack:
        settings = module_settings(cfg.rl)
        rewards = build_rewards(cfg.rl.rewards)
        served_base = run_dir / "vllm" / "base" if use_vllm and not cfg.engine.vllm.url else None
        policy, processor, family, reference = load_rl_policy(cfg, served_base=served_base)
        log.info("policy: %s; rewards: %s", count_parameters(policy), ", ".join(f"{r.name}×{r.weight}" for r in rewards))
        space = ModelSpace.of(processor, family)
        classes = training_classes(cfg.data)
        collate = PromptCollator(processor, space, classes=classes, think_tags=cfg.traces.think_tags)
        engine = (
            stack.enter_context(vllm_rollouts(cfg, run_dir, policy, processor, collate.prompt, settings["sampling"])) if use_vllm else None
        )
        datamodule = FERDataModule(
            cfg.data, cfg.au, train_collate=collate, eval_collate=collate, train_batch_size=cfg.rl.batch_size, seed=cfg.seed
        )
        module = GRPOModule(
            policy,
            processor,
            rewards,
            **settings,
            convention=space.convention,
            classes=classes,
            reference=reference,
            gradient_clip_val=cfg.trainer.gradient_clip_val,
            engine=engine,
            importance_sampling_cap=cfg.rl.vllm_importance_sampling_cap,
        )
        overrides = {"gradient_clip_val": None, "accumulate_grad_batches": 1, "limit_val_batches": 0, **(trainer_overrides or {})}
        trainer = build_trainer(cfg, run_dir, **overrides)
        return fit_and_export(
            cfg, trainer, module, datamodule, processor, family=family, base_name_or_path=cfg.model.init_from, classes=classes
        )
