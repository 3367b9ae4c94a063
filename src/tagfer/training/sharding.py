"""FSDP2 (``fully_shard``) for the policy: how it is wrapped, what checkpoints keep, what the export gathers.

``trainer.strategy: fsdp`` builds Lightning's ``ModelParallelStrategy`` (data-parallel only); the modules'
``configure_model`` then calls :func:`shard_model`, which applies ``fully_shard`` bottom-up:

* every transformer block the model class declares unsplittable (``_no_split_modules``: the decoder
  layers and the vision blocks, e.g. ``Qwen2VLDecoderLayer`` and ``Qwen2VLVisionBlock``);
* the vision tower (``visual``: patch embedding, merger — with LoRA the merger's trainable copy too);
* the root (embeddings, final norm, LM head; a ``PeftModel`` is sharded as a whole, so LoRA weights sit
  in the same units as the frozen weights they adapt — FSDP2 keeps per-parameter ``requires_grad``).

The same code runs on CPU (gloo) and on GPUs (NCCL). Each unit all-gathers its weights for its own
forward/backward and frees them afterwards; generation gathers everything once instead
(:func:`tagfer.models.fsdp.unsharded`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from peft import PeftModel
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from tagfer.models.fsdp import fsdp_units

log = logging.getLogger(__name__)

VISION_TOWER = "visual"


def mixed_precision_policy(precision: str) -> MixedPrecisionPolicy | None:
    """FSDP2's policy for Lightning's ``trainer.precision``: ``bf16-mixed`` gathers and computes in
    bfloat16 and reduces gradients in float32; anything else keeps the parameters' own dtype (None)."""
    if precision == "bf16-mixed":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return None


def block_names(model: torch.nn.Module) -> set[str]:
    """Class names of the blocks to shard one by one: the transformers model's ``_no_split_modules``."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    if not names:
        raise ValueError(f"{type(base).__name__} declares no _no_split_modules: cannot tell its transformer blocks for fully_shard")
    return names


def shard_model(model: torch.nn.Module, mesh, *, mp_policy: MixedPrecisionPolicy | None = None) -> torch.nn.Module:
    """Apply ``fully_shard`` per block, to the vision tower, then to ``model`` itself (the root).

    Args:
        model: the policy (``PeftModel`` or a transformers model) or a frozen reference copy.
        mesh: the data-parallel device mesh (``LightningModule.device_mesh["data_parallel"]``).
        mp_policy: see :func:`mixed_precision_policy`.

    Returns ``model`` (sharded in place). Sharding an already sharded model raises ValueError.
    """
    if fsdp_units(model):
        raise ValueError(f"{type(model).__name__} is already sharded")
    kwargs = {"mesh": mesh, "mp_policy": mp_policy or MixedPrecisionPolicy()}
    blocks = block_names(model)
    wrapped = {name: 0 for name in blocks}
    for module in list(model.modules()):
        name = type(module).__name__
        if name in blocks:
            fully_shard(module, **kwargs)
            wrapped[name] += 1
    for path, module in list(model.named_modules()):
        if path.split(".")[-1] == VISION_TOWER:
            fully_shard(module, **kwargs)
    fully_shard(model, **kwargs)
    log.info("fully_shard: %s, the vision tower and the root", ", ".join(f"{n}×{c}" for n, c in sorted(wrapped.items()) if c))
    return model


def is_sharded(state_dict: Mapping[str, object]) -> bool:
    """True when ``state_dict`` holds FSDP2 shards (``DTensor``)."""
    return any(isinstance(value, DTensor) for value in state_dict.values())


def local_gradients_finite(parameters) -> torch.Tensor:
    """0-dim bool tensor: every gradient of ``parameters`` is finite on this rank (FSDP2: this rank's
    shards). No device sync here; the caller reduces it across ranks and reads it once. True when no
    parameter has a gradient."""
    grads = [p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.ones((), dtype=torch.bool)
    return torch.stack([torch.isfinite(g).all() for g in grads]).all()


def checkpoint_state_dict(module: torch.nn.Module, state_dict: dict) -> dict:
    """What a Lightning checkpoint keeps of ``state_dict``: the trainable tensors (LoRA adapters, the
    projector; everything for a full fine-tune) — except a sharded one, which keeps every tensor because
    Lightning's distributed checkpoint loader restores the whole model (each rank writes its own shards)."""
    if is_sharded(state_dict):
        return state_dict
    trainable = {name for name, param in module.named_parameters() if param.requires_grad}
    return {key: value for key, value in state_dict.items() if key in trainable}


def consolidated_state_dict(model: torch.nn.Module, *, rank: int) -> dict[str, torch.Tensor] | None:
    """The full (unsharded) weights of a sharded ``model`` on rank 0, for ``save_pretrained``.

    Collective: every rank must call it. A ``PeftModel`` contributes only its trainable tensors (the
    adapter and ``modules_to_save`` — all an adapter export writes); a full model every parameter.
    Returns None when ``model`` is not sharded (export it as it is), ``{}`` on the other ranks.
    """
    if not fsdp_units(model):
        return None
    adapter_only = isinstance(model, PeftModel)
    out: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        if adapter_only and not param.requires_grad:
            continue
        full = param.full_tensor() if isinstance(param, DTensor) else param
        if rank == 0:
            out[name] = full.detach().cpu().clone()
    return out


def shard_for_strategy(lightning_module, *models: torch.nn.Module | None) -> None:
    """``configure_model`` body: under ``ModelParallelStrategy`` (``lightning_module.device_mesh`` set)
    shard each of ``models`` (None entries skipped) over the data-parallel mesh; otherwise do nothing.
    Idempotent (Lightning may call ``configure_model`` again for a later ``validate``/``test``)."""
    mesh = lightning_module.device_mesh
    if mesh is None:
        return
    policy = mixed_precision_policy(str(lightning_module.trainer.precision))
    for model in models:
        if model is not None and not fsdp_units(model):
            shard_model(model, mesh["data_parallel"], mp_policy=policy)
