"""Tests of the script writers: verbatim, a tiny random Llama, and the real SmolLM2 GGUF
(conversion cache, narration, a scene plan)."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from avgen_dagster.backends.llm_local import (
    clear_model_cache,
    load_model,
    resolve_source,
)
from avgen_dagster.backends.scene_plan import ScenePlan, plan_for_prompt
from avgen_dagster.backends.script_quality import is_chatter, repeated_sentences
from avgen_dagster.backends.text import (
    BASELINE,
    ENV_TEXT_RUNTIME,
    TUNED,
    ScriptWriter,
    SmolLM2ScriptWriter,
    VerbatimScript,
    default_smollm2_path,
    model_load_count,
    polish_narration,
    split_audience,
    words_to_max_tokens,
)
from avgen_dagster.cpus import idle_cpu_threads
from avgen_dagster.errors import BackendError, InvalidInputError

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The sky is blue because air scatters blue sunlight more than red sunlight.",
    "A narrator speaks clearly and slowly, so that every listener can follow the story.",
    "Light travels from the sun to the earth in about eight minutes.",
    "Children ask why the sky is blue, and scientists explain it with simple words.",
] * 20


@pytest.fixture(autouse=True)
def _transformers_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """This module tests the transformers runtime (test_text_ct2.py tests CTranslate2)."""
    monkeypatch.setenv(ENV_TEXT_RUNTIME, "transformers")


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Llama and a locally trained byte-level BPE tokenizer, saved."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_llama")
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<pad>", bos_token="<|im_start|>"
    )
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_verbatim_script_cleans_and_validates() -> None:
    writer = VerbatimScript()
    assert isinstance(writer, ScriptWriter)
    out = writer.write("Narrator: Hello! \U0001f44b *waves* This is **my** script.", max_words=3)
    assert out == "Hello! This is my script."  # the user's words are never cut
    with pytest.raises(InvalidInputError, match="script is empty"):
        writer.write("   ", max_words=50)


def test_tiny_llama_through_writer_loads_once(tiny_llama_dir: Path) -> None:
    before = model_load_count()
    first = SmolLM2ScriptWriter(model_path=str(tiny_llama_dir), max_new_tokens=60)
    assert isinstance(first, ScriptWriter)
    text = first.write("Explain why the sky is blue.", max_words=20)
    assert isinstance(text, str) and text
    assert "\n" not in text and "<|im" not in text and "<pad>" not in text
    assert re.search(r"[.!?][\"')]*$", text)
    assert len(text.split()) <= 20
    assert model_load_count() == before + 1
    # A second writer on the same folder (given as a different string) reuses the model.
    second = SmolLM2ScriptWriter(model_path=str(tiny_llama_dir) + "/", max_new_tokens=60)
    again = second.write("Explain why the sky is blue.", max_words=20)
    assert again == text  # greedy decoding is deterministic
    assert model_load_count() == before + 1


def test_writer_errors(tmp_path: Path, tiny_llama_dir: Path) -> None:
    missing = tmp_path / "no_such_model"
    with pytest.raises(BackendError, match=re.escape(str(missing))):
        SmolLM2ScriptWriter(model_path=str(missing))
    not_model = tmp_path / "notes.txt"
    not_model.write_text("hello")
    with pytest.raises(BackendError, match=r"not a \.gguf"):
        SmolLM2ScriptWriter(model_path=str(not_model))
    with pytest.raises(BackendError, match=r"no config\.json"):
        SmolLM2ScriptWriter(model_path=str(tmp_path))
    writer = SmolLM2ScriptWriter(model_path=str(tiny_llama_dir))
    with pytest.raises(InvalidInputError, match="prompt is empty"):
        writer.write("  ", max_words=20)
    assert words_to_max_tokens(120) == 196
    with pytest.raises(InvalidInputError):
        words_to_max_tokens(0)


@pytest.mark.slow
def test_smollm2_writes_clean_narration() -> None:
    """The real SmolLM2-135M-Instruct GGUF: one load (~20 s), one generation (~6 s)."""
    assert default_smollm2_path().suffix == ".gguf"
    writer = SmolLM2ScriptWriter()
    text = writer.write("Explain why the sky is blue to a ten-year-old", max_words=60)
    words = text.split()
    assert 15 <= len(words) <= 60, text
    assert "\n" not in text
    assert not re.search(r"[*#\[\]<>{}|_~]|https?://", text), text
    assert re.search(r"[.!?][\"')]*$", text)
    # English prose: mostly alphabetic words, some common function words.
    alpha = sum(1 for w in words if re.fullmatch(r"[A-Za-z'\-]+[.,!?;:\"]*", w.strip("\"'(")))
    assert alpha / len(words) > 0.8, text
    assert {"the", "is", "and", "a", "of", "to"} & {w.lower().strip(".,!?") for w in words}
    assert writer.last_generation_seconds is not None


def test_polish_narration_strips_chatter_repeats_and_cuts() -> None:
    raw = (
        "Here's a rewritten version with additional context and explanation:\n\n"
        "The sky looks blue because air scatters blue light. "
        "The sky looks blue because air scatters blue light! "
        "At sunset the light crosses more air, so red and orange remain. "
        "I made changes such as rephrasing sentences to enhance clarity. And then"
    )
    assert polish_narration(raw, 100) == (
        "The sky looks blue because air scatters blue light. At sunset the light crosses "
        "more air, so red and orange remain."
    )
    assert polish_narration(raw, 12) == "The sky looks blue because air scatters blue light."
    assert polish_narration("\U0001f600", 10) == ""
    # Without stripping (the baseline), chatter stays.
    assert polish_narration(raw, 100, strip=False).startswith("Here's a rewritten version")
    # Made-up arithmetic (the demo once ended on "… is 2 6 = 15, which is why …") is not
    # narration; numbers in prose are.
    sums = (
        "Light has many colors. So, the total number of ways is 2 6 = 15, which is why. "
        "Two plus 3*4 makes sense to nobody. About 70 percent of Earth is water."
    )
    assert polish_narration(sums, 100) == (
        "Light has many colors. About 70 percent of Earth is water."
    )


@pytest.mark.parametrize(
    ("prompt", "rest", "audience"),
    [
        (
            "Explain to a curious ten-year-old why the sky is blue.",
            "Explain why the sky is blue.",
            "a curious ten-year-old",
        ),
        ("Why do cats purr? Answer for a child.", "Why do cats purr?", "a child"),
        (
            "Describe to my grandmother how email works.",
            "Describe how email works.",
            "my grandmother",
        ),
        ("Tell me about tides", "Tell me about tides", None),
    ],
)
def test_split_audience(prompt: str, rest: str, audience: str | None) -> None:
    assert split_audience(prompt) == (rest, audience)


def test_tiny_llama_ranked_candidates_keep_threads(tiny_llama_dir: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    writer = SmolLM2ScriptWriter(model_path=str(tiny_llama_dir), candidates=2, max_new_tokens=40)
    assert writer.settings.candidates == 2 and writer.settings is not TUNED
    text = writer.write("Explain to a child why the sky is blue.", max_words=15)
    assert 1 <= len(writer.last_scores) <= 2
    assert len(text.split()) <= 15 and writer.last_new_tokens > 0
    assert torch.get_num_threads() == threads  # one thread while generating, then restored
    with pytest.raises(InvalidInputError, match="candidates"):
        SmolLM2ScriptWriter(model_path=str(tiny_llama_dir), candidates=0)


def test_tiny_llama_baseline_settings(tiny_llama_dir: Path) -> None:
    writer = SmolLM2ScriptWriter(model_path=str(tiny_llama_dir), settings=BASELINE)
    text = writer.write("Explain why the sky is blue.", max_words=20)
    assert text and len(text.split()) <= 20
    assert 1 <= len(writer.last_scores) <= 2  # the previous loop: a retry only if too short


@pytest.mark.slow
def test_gguf_conversion_cache_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """First load converts the GGUF and saves safetensors; the next load reads them."""
    import torch

    monkeypatch.setenv("AVGEN_CACHE_DIR", str(tmp_path))
    source = resolve_source(None)
    clear_model_cache()
    first = load_model(source, convert_cache=True)
    assert not first.from_conversion_cache
    (folder,) = (tmp_path / "converted").iterdir()
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()
    }
    clear_model_cache()
    second = load_model(source, convert_cache=True)
    assert second.from_conversion_cache
    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    msgs = [{"role": "user", "content": "Why is the sky blue?"}]
    ids = [
        m.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True)[
            "input_ids"
        ]
        for m in (first, second)
    ]
    assert ids[0] == ids[1]
    clear_model_cache()


@pytest.mark.slow
def test_smollm2_plan_for_a_short_prompt_validates() -> None:
    """The real SmolLM2: narration written, then a validated plan around it."""
    writer = SmolLM2ScriptWriter()
    plan = plan_for_prompt("Why do cats purr?", writer, max_words=40)
    assert isinstance(plan, ScenePlan)
    assert 10 <= plan.word_count <= 40
    assert not any(is_chatter(s) for s in plan.sentences)
    assert repeated_sentences(plan.narration) == 0
    assert plan.mood in {"pop", "ambient"}  # "cats" votes pop; no keyword gives ambient
    assert len(plan.visual_prompts) == len(plan.sentences)


def test_thread_count_does_not_change_the_text(tiny_llama_dir: Path) -> None:
    assert 1 <= idle_cpu_threads() <= len(os.sched_getaffinity(0))
    texts = []
    for threads in (1, 2):
        settings = replace(TUNED, threads=threads, candidates=2)
        writer = SmolLM2ScriptWriter(
            model_path=str(tiny_llama_dir), settings=settings, max_new_tokens=40
        )
        texts.append(writer.write("Explain why the sky is blue.", max_words=15))
    assert texts[0] == texts[1]
