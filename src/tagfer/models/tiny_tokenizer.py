"""The tiny model's tokenizer: a byte-level BPE trained on the project's own vocabulary, Qwen-style.

It behaves like Qwen2's tokenizer where the project depends on it:

* the same pre-tokenisation (Qwen2's split pattern, then byte-level without a prefix space), so every
  digit is its own token and box coordinates tokenise digit by digit, and any text round-trips;
* the Qwen special tokens, ``<|im_end|>`` as end of turn, ``<|endoftext|>`` as padding, left padding;
* a chat template that renders exactly what Qwen2-VL's and Qwen2.5-VL's templates render
  (default system turn, ``<|vision_start|><|image_pad|><|vision_end|>`` per image, generation prompt).

The corpus (:func:`tokenizer_corpus`) holds the prompts, the phrase bank and rendered traces, so a full
trace costs about 150–250 tokens with a 1024-token vocabulary.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tagfer.core.classes import CLASS_NAMES, LABEL_ALIASES
from tagfer.core.phrases import all_phrases
from tagfer.core.prompt import SYSTEM_PROMPT, task_prompt, teacher_prompt
from tagfer.core.trace import ARROW
from tagfer.core.vocabulary import AU_NAMES, EXPRESSION_PRIORS, REGIONS

#: Qwen's special tokens, in the order they get the ids 0..6.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"

#: Qwen2's pre-tokeniser split: letters runs, single digits, punctuation runs, newlines, spaces.
QWEN_SPLIT_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

#: Renders the same text as Qwen2-VL's / Qwen2.5-VL's chat template (transformers renders templates with
#: trim_blocks and lstrip_blocks).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: The trace grammar's fixed words (they are in the rendered traces too; listed so the corpus never lacks them).
GRAMMAR_WORDS: tuple[str, ...] = (
    "Global analysis:",
    "Verification loop:",
    "Inspect",
    "Final conclusion: Combined",
    "No active AUs",
    "indicate a dominant emotion of",
    "<bbox>[",
    "]</bbox>",
    "<answer>",
    "</answer>",
    "<think>",
    "</think>",
    ARROW,
)


def tokenizer_corpus() -> list[str]:
    """The texts the tiny tokenizer is trained on, in a fixed order without repeats.

    System and task prompts (both box conventions, with and without think tags), one teacher prompt per
    class, the phrase bank with its rendered traces (:func:`tagfer.core.phrases.all_phrases`), label
    aliases, AU and region names, digits and the grammar words.
    """
    texts = [SYSTEM_PROMPT]
    for convention in ("norm1000", "pixels"):
        for think in (False, True):
            texts.append(task_prompt(CLASS_NAMES, convention, think_tags=think))
        for aus in EXPRESSION_PRIORS.values():
            boxes = {au: (100 + 10 * i, 200, 350 + 10 * i, 480) for i, au in enumerate(aus)}
            texts.append(teacher_prompt({au: 0.9 for au in aus}, boxes, CLASS_NAMES, convention))
    texts += all_phrases()
    texts += list(LABEL_ALIASES) + list(CLASS_NAMES) + list(REGIONS)
    texts += [f"{au} ({name})" for au, name in AU_NAMES.items()]
    texts += [str(d) for d in range(10)] + list(GRAMMAR_WORDS)
    return list(dict.fromkeys(texts))


def build_tokenizer(vocab_size: int, corpus: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE on ``corpus`` (default :func:`tokenizer_corpus`) and wrap it for transformers.

    ``vocab_size`` is an upper bound: training stops earlier when the corpus has no more merges.
    Deterministic for a given corpus.
    """
    minimum = len(SPECIAL_TOKENS) + len(pre_tokenizers.ByteLevel.alphabet())
    if vocab_size < minimum:
        raise ValueError(f"model.tiny.vocab_size={vocab_size} is below {minimum} (256 bytes + {len(SPECIAL_TOKENS)} specials)")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus if corpus is not None else tokenizer_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
    )
