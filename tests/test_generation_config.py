"""Generation never inherits the checkpoint's generation_config (repetition penalty, top-k/top-p, ...)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from fixtures_models import tiny_model_cfg
from tagfer.data.face_samples import face_samples
from tagfer.models.collate import PromptCollator
from tagfer.models.generation import explicit_generation_config, generate_completions
from tagfer.models.loader import load_vlm
from tagfer.models.space import ModelSpace

#: What real Qwen-VL checkpoints ship (repetition_penalty 1.05, top_k/top_p), strong enough to change the
#: tiny model's samples: before explicit_generation_config the penalty, min_p and no-repeat size leaked in.
CHECKPOINT_DEFAULTS = {
    "do_sample": True,
    "repetition_penalty": 5.0,
    "temperature": 0.2,
    "top_k": 3,
    "top_p": 0.5,
    "min_p": 0.5,
    "no_repeat_ngram_size": 1,
    "min_new_tokens": 6,
    "bad_words_ids": [[40], [41]],
}


def completions(model_dir, **sampling):
    model, processor, family = load_vlm(tiny_model_cfg(model_dir), for_training=False)
    inputs = PromptCollator(processor, ModelSpace.of(processor, family))(face_samples(2))["inputs"]
    torch.manual_seed(7)
    return generate_completions(model, processor, inputs, max_new_tokens=12, **sampling), model


@pytest.fixture(scope="module")
def opinionated_checkpoint(tiny_qwen2_vl_dir, tmp_path_factory):
    """A copy of the tiny model whose generation_config.json carries :data:`CHECKPOINT_DEFAULTS`."""
    out = tmp_path_factory.mktemp("opinionated") / "model"
    shutil.copytree(tiny_qwen2_vl_dir, out)
    path = out / "generation_config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**config, **CHECKPOINT_DEFAULTS}))
    return out


@pytest.mark.parametrize(
    "sampling",
    [dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0), dict(do_sample=False)],
    ids=["sampled", "greedy"],
)
def test_checkpoint_generation_config_changes_nothing(tiny_qwen2_vl_dir, opinionated_checkpoint, sampling):
    plain, _ = completions(tiny_qwen2_vl_dir, **sampling)
    opinionated, model = completions(opinionated_checkpoint, **sampling)
    assert model.generation_config.repetition_penalty == 5.0  # the checkpoint's config did load...
    assert model.generation_config.min_new_tokens == 6
    assert torch.equal(opinionated.ids, plain.ids)  # ...and played no part
    assert opinionated.texts == plain.texts
    assert model.generation_config.top_k == 3  # restored after the call


def test_explicit_config_states_every_default():
    config = explicit_generation_config(
        max_new_tokens=5, do_sample=False, temperature=0.3, top_p=0.9, top_k=4, eos_token_id=[2], pad_token_id=0, suppress_tokens=[9]
    )
    assert config.do_sample is False
    assert (config.repetition_penalty, config.no_repeat_ngram_size, config.num_beams, config.min_length) == (1.0, 0, 1, 0)
    assert (config.max_new_tokens, config.eos_token_id, config.suppress_tokens) == (5, [2], [9])
    sampled = explicit_generation_config(
        max_new_tokens=5, do_sample=True, temperature=0.3, top_p=0.9, top_k=4, eos_token_id=[2], pad_token_id=0, suppress_tokens=[]
    )
    assert (sampled.temperature, sampled.top_p, sampled.top_k) == (0.3, 0.9, 4)
