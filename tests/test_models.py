"""Tiny Qwen2-VL / Qwen2.5-VL end to end: loader, tokenizer, processor, LoRA policy, export, model inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from fixtures_models import tiny_model_cfg
from tagfer.core.config import load_config
from tagfer.core.prompt import task_prompt
from tagfer.core.trace import Trace, TraceStep, render_trace
from tagfer.models.boxes import box_convention
from tagfer.models.export import EXPORT_META_FILE, export_policy, read_export_meta
from tagfer.models.inputs import (
    IGNORE_INDEX,
    append_completions,
    boxes_to_model_space,
    build_generation_inputs,
    build_sft_inputs,
    decode_completions,
    repeat_inputs,
)
from tagfer.models.loader import load_processor, load_vlm
from tagfer.models.policy import (
    count_parameters,
    frozen_reference_copy,
    is_projector_parameter,
    is_vision_parameter,
    lora_target_pattern,
    prepare_policy,
    reference_model,
)
from tagfer.models.resize import model_input_size
from tagfer.models.tiny import mrope_section
from tagfer.models.tiny_tokenizer import SPECIAL_TOKENS

FAMILY_DIRS = {"qwen2_vl": "tiny_qwen2_vl_dir", "qwen2_5_vl": "tiny_qwen2_5_vl_dir"}
LM_TARGETS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(params=sorted(FAMILY_DIRS))
def family_dir(request):
    return request.param, request.getfixturevalue(FAMILY_DIRS[request.param])


def _images(sizes=((112, 112), (96, 140)), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for w, h in sizes]


def _trace(steps: int = 5) -> str:
    regions = ["inner brow", "outer brow", "eye region", "cheeks", "lip corners"][:steps]
    aus = [("AU1", "AU4"), ("AU2",), ("AU5", "AU7"), ("AU6",), ("AU12", "AU14")][:steps]
    trace = Trace(
        global_analysis="The brows are drawn together and the mouth corners pulled down.",
        steps=tuple(
            TraceStep(region, a, "inner corners raised and knitted", (235 + i, 119, 345, 188 + i))
            for i, (region, a) in enumerate(zip(regions, aus))
        ),
        conclusion_aus=tuple(x for a in aus for x in a),
        label="sadness",
    )
    return render_trace(trace)


def _perturb(model: torch.nn.Module, *, only=lambda name: True, seed: int = 1) -> None:
    """Give trainable weights random values (LoRA B starts at zero: the adapter would be a no-op)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and only(name):
                param.add_(0.05 * torch.randn(param.shape, generator=generator))


# ------------------------------------------------------------------------------------ tiny model files
def test_tiny_directory_loads_with_plain_auto_classes(family_dir):
    family, path = family_dir
    assert AutoConfig.from_pretrained(path, local_files_only=True).model_type == family
    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    assert type(processor).__name__ == {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor"}[family]
    assert processor.video_processor is not None
    assert 200_000 <= sum(p.numel() for p in model.parameters()) <= 2_000_000
    text = model.config.text_config
    assert sum(text.rope_parameters["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2
    assert model.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")


def test_mrope_section_follows_qwen():
    assert mrope_section(128) == [16, 24, 24]
    assert mrope_section(16) == [2, 3, 3]
    with pytest.raises(ValueError, match="head_dim"):
        mrope_section(7)


def test_tokenizer_is_qwen_like(tiny_qwen2_vl_dir):
    _, processor, _ = load_vlm(tiny_model_cfg(tiny_qwen2_vl_dir), for_training=False)
    tokenizer = processor.tokenizer
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.padding_side == "left"
    tokens = tokenizer.tokenize("<bbox>[235,119,345,188]</bbox>")
    assert [t for t in tokens if t.isdigit()] == list("235119345188")  # one token per digit
    trace = _trace(5)
    ids = tokenizer(trace, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == trace
    assert len(ids) <= 250, f"a 5-step trace costs {len(ids)} tokens"
    assert tokenizer.decode(tokenizer("Näive ünïcode 😀")["input_ids"]) == "Näive ünïcode 😀"


def test_chat_template_renders_qwen_format(tiny_qwen2_vl_dir):
    processor = AutoProcessor.from_pretrained(tiny_qwen2_vl_dir, local_files_only=True)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    assert processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    turns = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]
    assert processor.tokenizer.apply_chat_template(turns, tokenize=False) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
    )


# ------------------------------------------------------------------------------------------- loader
def test_loader_builds_missing_tiny_model_and_reports_family(tmp_path, configs_dir):
    overrides = ["model=tiny_qwen2_5_vl", f"model.name_or_path={tmp_path / 'built'}", "model.max_pixels=200704"]
    cfg = load_config(configs_dir / "sft.yaml", overrides).model  # the composed YAML, as the CLI sees it
    model, processor, family = load_vlm(cfg, for_training=True)
    assert family == "qwen2_5_vl" and box_convention(family) == "pixels"
    assert (tmp_path / "built" / "config.json").is_file() and model.training
    assert model_input_size(300, 300, processor) == (308, 308)  # processor follows model.max_pixels (84 at 112*112)
    assert not list(tmp_path.glob(".built.tmp-*"))  # staged directory renamed into place


def test_loader_errors_name_the_path(tmp_path):
    cfg = tiny_model_cfg(tmp_path / "nowhere", build_tiny=False)
    with pytest.raises(FileNotFoundError, match="nowhere.*build_tiny=true"):
        load_vlm(cfg, for_training=False)
    cfg = tiny_model_cfg(tmp_path / "base", init_from=str(tmp_path / "sft-export"))
    with pytest.raises(FileNotFoundError, match="model.init_from.*sft-export"):
        load_vlm(cfg, for_training=False)


def test_family_override_wins(tiny_qwen2_vl_dir):
    *_, family = load_vlm(tiny_model_cfg(tiny_qwen2_vl_dir, family="qwen2_5_vl"), for_training=False)
    assert family == "qwen2_5_vl"


# ----------------------------------------------------------------------------------- forward, generate
def test_forward_and_generate_on_images(family_dir):
    family, path = family_dir
    model, processor, _ = load_vlm(tiny_model_cfg(path, family), for_training=False)
    prompts = [task_prompt(convention=box_convention(family)), "Classify the facial expression."]
    inputs = build_generation_inputs(processor, _images(), prompts)
    image_tokens = (inputs["input_ids"] == model.config.image_token_id).sum(-1).tolist()
    assert image_tokens == [16, 15]  # 112x112 → 8x8 patches → 4x4 merged; 96x140 → 84x140 → 3x5
    assert inputs["attention_mask"][1, 0] == 0 and inputs["attention_mask"][:, -1].all()  # left padding
    with torch.no_grad():
        logits = model(**inputs).logits
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert logits.shape == (*inputs["input_ids"].shape, model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()
    assert out.shape[0] == 2 and inputs["input_ids"].shape[1] < out.shape[1] <= inputs["input_ids"].shape[1] + 6
    texts = decode_completions(processor, out, inputs["input_ids"].shape[1])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_repeat_and_append_keep_images_paired(tiny_qwen2_5_vl_dir):
    """Forward of G repeated rows equals the repeated forward; prompt+completion logits match generate's scores."""
    model, processor, _ = load_vlm(tiny_model_cfg(tiny_qwen2_5_vl_dir, "qwen2_5_vl"), for_training=False)
    inputs = build_generation_inputs(processor, _images(), ["Short.", "A longer prompt here."])
    repeated = repeat_inputs(inputs, 3)
    assert repeated["input_ids"].shape[0] == 6 and repeated["image_grid_thw"].shape[0] == 6
    with torch.no_grad():
        base = model(**inputs).logits
        torch.testing.assert_close(model(**repeated).logits, base.repeat_interleave(3, dim=0))
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False, output_scores=True, return_dict_in_generate=True)
        prompt_len = inputs["input_ids"].shape[1]
        completion = out.sequences[:, prompt_len:]
        full = append_completions(inputs, completion, torch.ones_like(completion))
        logits = model(**full).logits[:, prompt_len - 1 : -1]
    assert full["mm_token_type_ids"][:, prompt_len:].eq(0).all()
    torch.testing.assert_close(logits, torch.stack(out.scores, dim=1), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------- SFT inputs
def test_sft_labels_cover_exactly_the_answer(family_dir):
    family, path = family_dir
    _, processor, _ = load_vlm(tiny_model_cfg(path, family), for_training=False)
    targets = [_trace(5), "Global analysis: calm.\n<answer> neutral </answer>"]
    batch = build_sft_inputs(processor, _images(), ["Classify.", "Classify the expression."], targets, max_length=512)
    tokenizer = processor.tokenizer
    for i, target in enumerate(targets):
        labelled = batch["labels"][i] != IGNORE_INDEX
        assert torch.equal(batch["labels"][i][labelled], batch["input_ids"][i][labelled])
        assert tokenizer.decode(batch["labels"][i][labelled]) == target + "<|im_end|>"
        span = labelled.nonzero().flatten()
        assert span.max() - span.min() + 1 == len(span)  # one contiguous span ...
        assert batch["attention_mask"][i][span.max() + 1 :].sum() == 0  # ... that ends the row
        assert tokenizer.decode(batch["input_ids"][i][: span.min()][batch["attention_mask"][i][: span.min()].bool()]).endswith(
            "<|im_start|>assistant\n"
        )
    assert (batch["input_ids"] == processor.image_token_id).sum(-1).tolist() == [16, 15]
    assert batch["mm_token_type_ids"].sum(-1).tolist() == [16, 15]


def test_sft_truncation_cuts_only_the_target(tiny_qwen2_vl_dir):
    _, processor, _ = load_vlm(tiny_model_cfg(tiny_qwen2_vl_dir), for_training=False)
    images, prompts, targets = _images(((112, 112),)), ["Classify."], [_trace(5)]
    full = build_sft_inputs(processor, images, prompts, targets, max_length=1024)
    prompt_len = int((full["labels"][0] == IGNORE_INDEX).sum())
    cut = build_sft_inputs(processor, images, prompts, targets, max_length=prompt_len + 7)
    assert cut["input_ids"].shape[1] == prompt_len + 7
    assert torch.equal(cut["input_ids"][0], full["input_ids"][0, : prompt_len + 7])
    assert int((cut["labels"][0] != IGNORE_INDEX).sum()) == 7
    assert int((cut["input_ids"][0] == processor.image_token_id).sum()) == 16
    with pytest.raises(ValueError, match="sample rafdb/test_0001.jpg.*max_length"):
        build_sft_inputs(processor, images, prompts, targets, max_length=prompt_len, sample_ids=["rafdb/test_0001.jpg"])


def test_input_validation(tiny_qwen2_vl_dir):
    _, processor, _ = load_vlm(tiny_model_cfg(tiny_qwen2_vl_dir), for_training=False)
    with pytest.raises(ValueError, match="one image"):
        build_generation_inputs(processor, _images(), ["only one prompt"])
    with pytest.raises(ValueError, match="image 0.*uint8"):
        build_generation_inputs(processor, [np.zeros((8, 8, 3), np.float32)], ["x"])


def test_boxes_to_model_space_per_au():
    au_box = {"AU4": (20, 10, 60, 30), "AU12": (30, 60, 90, 95)}
    out = boxes_to_model_space(au_box, (100, 100), (112, 112), "norm1000")
    assert out == {"AU4": pytest.approx((200, 100, 600, 300)), "AU12": pytest.approx((300, 600, 900, 950))}
    assert boxes_to_model_space({}, (100, 100), (112, 112), "pixels") == {}


# ----------------------------------------------------------------------------------------- policy
def test_lora_target_pattern_excludes_the_vision_tower():
    import re

    pattern = lora_target_pattern(["q_proj", "up_proj"])
    assert re.fullmatch(pattern, "model.language_model.layers.0.self_attn.q_proj")
    assert re.fullmatch(pattern, "model.layers.3.mlp.up_proj")
    assert not re.fullmatch(pattern, "model.visual.blocks.0.mlp.up_proj")
    assert not re.fullmatch(pattern, "visual.blocks.0.attn.qkv")
    assert not re.fullmatch(pattern, "model.language_model.layers.0.self_attn.q_proj_extra")


def test_lora_policy_and_reference(family_dir):
    family, path = family_dir
    cfg = tiny_model_cfg(path, family, gradient_checkpointing=True)
    model, processor, _ = load_vlm(cfg, for_training=True)
    inputs = build_generation_inputs(processor, _images(((112, 112),)), ["Classify."])
    with torch.no_grad():
        base_logits = model.eval()(**inputs).logits
    policy = prepare_policy(model, cfg)

    lora_modules = {n.rsplit(".lora_A", 1)[0] for n, _ in policy.named_parameters() if ".lora_A." in n}
    assert lora_modules and all(".language_model." in n and n.rsplit(".", 1)[1] in LM_TARGETS for n in lora_modules)
    assert len(lora_modules) == len(LM_TARGETS) * model.config.text_config.num_hidden_layers
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert all("lora_" in n or is_projector_parameter(n) for n in trainable)
    assert any(is_projector_parameter(n) for n in trainable)  # the merger trains (modules_to_save)
    assert not any(p.requires_grad for n, p in policy.named_parameters() if is_vision_parameter(n) and not is_projector_parameter(n))
    counts = count_parameters(policy)
    assert 0 < counts.trainable < counts.total

    _perturb(policy)
    policy.train()
    loss = policy(**build_sft_inputs(processor, _images(((112, 112),)), ["Classify."], ["<answer> fear </answer>"], 512)).loss
    loss.backward()
    assert all(p.grad is not None for n, p in policy.named_parameters() if p.requires_grad and "lora_B" in n)
    policy.eval()
    with torch.no_grad():
        assert not torch.allclose(policy(**inputs).logits, base_logits)
        assert frozen_reference_copy(policy) is None
        with reference_model(policy) as reference:
            torch.testing.assert_close(reference(**inputs).logits, base_logits, rtol=0, atol=0)


def test_lora_with_trainable_vision_is_refused(tiny_qwen2_vl_dir):
    cfg = tiny_model_cfg(tiny_qwen2_vl_dir, freeze_vision=False)
    model, _, _ = load_vlm(cfg, for_training=True)
    with pytest.raises(ValueError, match="freeze_vision=false needs model.finetune=full"):
        prepare_policy(model, cfg)


def test_full_finetune_policy_and_frozen_reference(tiny_qwen2_5_vl_dir):
    cfg = tiny_model_cfg(tiny_qwen2_5_vl_dir, "qwen2_5_vl", finetune="full", train_projector=False)
    model, processor, _ = load_vlm(cfg, for_training=True)
    policy = prepare_policy(model, cfg)
    for name, param in policy.named_parameters():
        assert param.requires_grad == (not is_vision_parameter(name)), name
    reference = frozen_reference_copy(policy)
    assert not any(p.requires_grad for p in reference.parameters()) and not reference.training
    inputs = build_generation_inputs(processor, _images(((112, 112),)), ["Classify."])
    with torch.no_grad():
        before = reference(**inputs).logits
        _perturb(policy)
        with reference_model(policy, reference) as ref:
            torch.testing.assert_close(ref(**inputs).logits, before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="frozen_reference_copy"):
        with reference_model(policy):
            pass


# ----------------------------------------------------------------------------------------- export
@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_export_then_load_gives_identical_logits(tiny_qwen2_vl_dir, tmp_path, finetune, monkeypatch):
    cfg = tiny_model_cfg(tiny_qwen2_vl_dir, finetune=finetune)
    model, processor, family = load_vlm(cfg, for_training=True)
    policy = prepare_policy(model, cfg)
    _perturb(policy)
    policy.eval()
    inputs = build_generation_inputs(processor, _images(((112, 112),)), ["Classify."])
    with torch.no_grad():
        expected = policy(**inputs).logits
    out = export_policy(policy, processor, tmp_path / "sft", base_name_or_path=cfg.name_or_path, family=family, extra_meta={"stage": "sft"})
    meta = read_export_meta(out)
    assert meta["finetune"] == finetune and meta["family"] == "qwen2_vl" and meta["stage"] == "sft"
    assert meta["base_name_or_path"] == str(tiny_qwen2_vl_dir.resolve())
    assert (out / "adapter_config.json").is_file() == (finetune == "lora")
    assert json.loads((out / EXPORT_META_FILE).read_text())["versions"]["transformers"]

    loaded, loaded_processor, loaded_family = load_vlm(cfg, for_training=False, checkpoint=out)
    assert loaded_family == family and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, expected, rtol=0, atol=0)
    assert loaded_processor.tokenizer.get_vocab() == processor.tokenizer.get_vocab()

    # without weights (a vLLM server generates): the same processor and family, and no network is built
    def no_network(*args, **kwargs):
        raise AssertionError("load_processor loaded weights")

    monkeypatch.setattr("tagfer.models.loader._load_network", no_network)
    bare_processor, bare_family = load_processor(cfg, checkpoint=out)
    assert bare_family == family and bare_processor.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert bare_processor.tokenizer.padding_side == "left"
    assert bare_processor.image_processor.size == loaded_processor.image_processor.size
    monkeypatch.undo()

    # RL starts from the export (model.init_from) and keeps training the same adapter.
    rl_cfg = tiny_model_cfg(tiny_qwen2_vl_dir, finetune=finetune, init_from=str(out))
    resumed, _, _ = load_vlm(rl_cfg, for_training=True)
    resumed = prepare_policy(resumed, rl_cfg)
    assert count_parameters(resumed).trainable == count_parameters(policy).trainable
    with pytest.raises(ValueError, match="may not override"):
        export_policy(policy, processor, tmp_path / "x", base_name_or_path=cfg.name_or_path, family=family, extra_meta={"family": "x"})
