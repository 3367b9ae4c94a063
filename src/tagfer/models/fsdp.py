"""FSDP2 at run time: gather a sharded model once for a whole ``generate``, and the root it must start from.

A model sharded with ``fully_shard`` (see :mod:`tagfer.training.sharding`) all-gathers each block's weights
in that block's forward and frees them afterwards. ``generate`` runs the forward once per new token, so
without care every token re-gathers every layer. :func:`unsharded` gathers every FSDP unit once, keeps the
weights gathered for the whole block of code (rollout: image encoding and all decoding steps) and frees
them at the end. Without FSDP (one process, DDP) these helpers do nothing.

FSDP2 takes the first unit whose forward runs as its *root*. Rollouts call the vision tower directly
(``get_image_features``), so :func:`init_fsdp_root` makes the outermost unit the root first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.distributed.fsdp import FSDPModule

_GATHERED_FLAG = "_tagfer_unsharded"


def fsdp_units(model: torch.nn.Module) -> list[FSDPModule]:
    """Every FSDP2 unit inside ``model`` (outermost first); empty when ``model`` itself is not sharded
    (:func:`tagfer.training.sharding.shard_model` always shards the root, so that is checked first)."""
    if not isinstance(model, FSDPModule):
        return []
    return [module for module in model.modules() if isinstance(module, FSDPModule)]


def init_fsdp_root(model: torch.nn.Module) -> None:
    """Make the outermost FSDP unit of ``model`` the root before any inner unit runs on its own.

    Uses FSDP2's lazy initialisation (``FSDPState._lazy_init``, what the root's first forward calls); a
    no-op when already initialised or when ``model`` is not sharded.
    """
    units = fsdp_units(model)
    if units:
        units[0]._get_fsdp_state()._lazy_init()


@contextmanager
def unsharded(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Inside the block every FSDP unit of ``model`` holds its full weights; all-gathered once on entry.

    Forwards inside do not reshard (``set_reshard_after_forward(False)``), so ``generate`` decodes every
    token without further all-gathers; on exit the weights are resharded and the units' reshard setting
    is restored. Re-entrant (an inner ``unsharded`` of the same model does nothing). Every rank must
    enter it (the all-gathers are collective). Use it under ``torch.no_grad()``.
    """
    units = fsdp_units(model)
    if not units or getattr(model, _GATHERED_FLAG, False):
        yield model
        return
    init_fsdp_root(model)
    reshard_after_forward = [_reshards_after_forward(unit) for unit in units]
    setattr(model, _GATHERED_FLAG, True)
    try:
        for unit in units:
            unit.set_reshard_after_forward(False, recurse=False)
            unit.unshard()
        yield model
    finally:
        for unit, flag in zip(units, reshard_after_forward):
            unit.reshard()
            unit.set_reshard_after_forward(flag, recurse=False)
        setattr(model, _GATHERED_FLAG, False)


def _reshards_after_forward(unit: FSDPModule) -> bool:
    """Whether ``unit`` frees its gathered weights after each forward (False for the root)."""
    groups = unit._get_fsdp_state()._fsdp_param_groups
    return any(group.post_forward_mesh_info is not None for group in groups)
