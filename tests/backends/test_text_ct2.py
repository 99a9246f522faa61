"""The CTranslate2 runtime of the local writer: conversion, generation, seeding, fallback.

Tiny random-weight models built here (no download); the real SmolLM2 only in the slow test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from avgen_dagster.backends import llm_ct2
from avgen_dagster.backends.llm_ct2 import (
    Ct2Sampling,
    clear_ct2_cache,
    ct2_folder_for,
    ct2_load_count,
    generate_ct2,
    load_ct2,
)
from avgen_dagster.backends.llm_local import model_load_count
from avgen_dagster.backends.text import ENV_TEXT_RUNTIME, SmolLM2ScriptWriter
from avgen_dagster.errors import BackendError, InvalidInputError
from tests.backends.test_text import tiny_llama_dir  # noqa: F401  (a fixture)

pytest.importorskip("ctranslate2")

SKY = "Explain why the sky is blue."
USER_CACHE = os.environ.get("AVGEN_CACHE_DIR")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion cache for the module (the tiny model converts once)."""
    return tmp_path_factory.mktemp("avgen_cache")


@pytest.fixture(autouse=True)
def _isolated(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVGEN_CACHE_DIR", str(cache_dir))
    monkeypatch.delenv(ENV_TEXT_RUNTIME, raising=False)


@pytest.fixture(scope="module")
def tiny_gpt_neo_dir(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> Path:  # noqa: F811
    """A random-weight GPT-Neo (an architecture CTranslate2 4.8 cannot convert)."""
    import torch
    from transformers import AutoTokenizer, GPTNeoConfig, GPTNeoForCausalLM

    folder = tmp_path_factory.mktemp("tiny_gpt_neo")
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.save_pretrained(folder)
    config = GPTNeoConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        attention_types=[[["global", "local"], 1]],
        max_position_embeddings=512,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    GPTNeoForCausalLM(config).save_pretrained(folder)
    return folder


def test_conversion_is_cached_and_loads_once(tiny_llama_dir: Path, cache_dir: Path) -> None:  # noqa: F811
    clear_ct2_cache()
    before = ct2_load_count()
    model = load_ct2(tiny_llama_dir, threads=1)
    folder = ct2_folder_for(tiny_llama_dir)
    assert model.folder == folder and folder.parent == cache_dir / "ctranslate2"
    assert {"model.bin", "config.json", "vocabulary.json", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()
    }
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp left
    assert load_ct2(tiny_llama_dir, threads=1) is model  # the process cache
    assert ct2_load_count() == before + 1
    clear_ct2_cache()
    again = load_ct2(tiny_llama_dir, threads=1)
    assert not again.converted and again.folder == folder  # the disk cache


def test_float32_greedy_matches_transformers(tiny_llama_dir: Path) -> None:  # noqa: F811
    """The converted weights compute what transformers computes (float32, greedy)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = load_ct2(tiny_llama_dir, threads=1, quantization="float32")
    ids = model.tokenizer(SKY)["input_ids"]
    ours = generate_ct2(model, ids, max_new_tokens=12)
    hf = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    with torch.inference_mode():
        out = hf.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, pad_token_id=0)[
            0, len(ids) :
        ].tolist()
    eos = model.tokenizer.eos_token_id
    assert ours == [t for t in out if t != eos][: len(ours)] and ours


def test_sampling_is_seeded(tiny_llama_dir: Path) -> None:  # noqa: F811
    model = load_ct2(tiny_llama_dir, threads=1)
    ids = model.tokenizer(SKY)["input_ids"]

    def sample(seed: int) -> list[int]:
        hot = Ct2Sampling(temperature=1.5, top_p=1.0, top_k=0, seed=seed)
        return generate_ct2(model, ids, max_new_tokens=24, min_new_tokens=24, sampling=hot)

    first = sample(7)
    assert sample(3) != first  # another seed, another text
    assert sample(7) == first  # same seed again in this process (a fresh generator each time)
    greedy = generate_ct2(model, ids, max_new_tokens=24)
    assert generate_ct2(model, ids, max_new_tokens=24) == greedy


def test_stop_callback_and_lengths(tiny_llama_dir: Path) -> None:  # noqa: F811
    model = load_ct2(tiny_llama_dir, threads=1)
    ids = model.tokenizer(SKY)["input_ids"]
    long = generate_ct2(model, ids, max_new_tokens=40, min_new_tokens=40)
    assert len(long) == 40  # the end token suppressed until min_new_tokens
    short = generate_ct2(model, ids, max_new_tokens=40, min_new_tokens=40, stop=lambda n: True)
    assert len(short) == 8 and short == long[:8]  # asked every 8 tokens


def test_writer_contract_on_ctranslate2(tiny_llama_dir: Path) -> None:  # noqa: F811
    before = model_load_count()
    writer = SmolLM2ScriptWriter(model_path=str(tiny_llama_dir), runtime="ctranslate2")
    texts = []
    for _ in range(2):
        text = writer.write(SKY, max_words=20)
        assert writer.last_runtime == "ctranslate2" and writer.last_new_tokens > 0
        assert text and "\n" not in text and "<|im" not in text and "<pad>" not in text
        assert re.search(r"[.!?][\"')]*$", text) and len(text.split()) <= 20
        texts.append(text)
    # Same prompt + seed, same text: in this writer, and in another one (sampled candidates too).
    other = SmolLM2ScriptWriter(model_path=str(tiny_llama_dir) + "/", runtime="ctranslate2")
    assert other.write(SKY, max_words=20) == texts[0] == texts[1]
    assert model_load_count() == before  # transformers never loaded the model
    with pytest.raises(BackendError, match="usable words"):
        # One token of budget can never make 5 words.
        SmolLM2ScriptWriter(
            model_path=str(tiny_llama_dir), runtime="ctranslate2", max_new_tokens=1
        ).write(SKY, max_words=40)


def test_auto_prefers_ctranslate2_and_falls_back(
    tiny_llama_dir: Path,  # noqa: F811
    tiny_gpt_neo_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auto = SmolLM2ScriptWriter(model_path=str(tiny_llama_dir), max_new_tokens=40)
    auto.write(SKY, max_words=15)
    assert auto.runtime == "auto" and auto.last_runtime == "ctranslate2"
    # A torch dtype, the env switch, or no ctranslate2 installed: transformers.
    typed = SmolLM2ScriptWriter(model_path=str(tiny_llama_dir), dtype="float32")
    typed.write(SKY, max_words=15)
    assert typed.last_runtime == "transformers"
    monkeypatch.setenv(ENV_TEXT_RUNTIME, "transformers")
    env = SmolLM2ScriptWriter(model_path=str(tiny_llama_dir), max_new_tokens=40)
    env.write(SKY, max_words=15)
    assert env.runtime == "transformers" and env.last_runtime == "transformers"
    monkeypatch.delenv(ENV_TEXT_RUNTIME)
    with monkeypatch.context() as m:
        m.setattr(llm_ct2, "ct2_installed", lambda: False)
        missing = SmolLM2ScriptWriter(model_path=str(tiny_llama_dir), max_new_tokens=40)
        missing.write(SKY, max_words=15)
        assert missing.last_runtime == "transformers"
        with pytest.raises(BackendError, match="not installed"):
            SmolLM2ScriptWriter(model_path=str(tiny_llama_dir), runtime="ctranslate2").load()
    # An architecture CTranslate2 cannot convert: transformers writes, the refusal is kept.
    neo = SmolLM2ScriptWriter(model_path=str(tiny_gpt_neo_dir), max_new_tokens=40)
    neo.load()
    assert neo._backend()[0] == "transformers"
    with pytest.raises(BackendError, match="CTranslate2 cannot"):
        SmolLM2ScriptWriter(model_path=str(tiny_gpt_neo_dir), runtime="ctranslate2").load()
    assert not list(ct2_folder_for(tiny_gpt_neo_dir).parent.glob(".*"))  # no temp left
    with pytest.raises(InvalidInputError, match="runtime"):
        SmolLM2ScriptWriter(model_path=str(tiny_llama_dir), runtime="onnx")  # type: ignore[arg-type]
    # The resource's field reaches the writer (None: the environment decides).
    from avgen_dagster.resources.backends import TextBackendResource

    pinned = TextBackendResource(model_path=str(tiny_llama_dir), runtime="transformers")
    assert pinned.script_writer().runtime == "transformers"
    assert TextBackendResource(model_path=str(tiny_llama_dir)).script_writer().runtime == "auto"


def test_unwritable_cache_converts_into_a_temporary_folder(
    tiny_llama_dir: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("AVGEN_CACHE_DIR", str(blocker / "cache"))
    clear_ct2_cache()
    model = load_ct2(tiny_llama_dir, threads=1)
    assert model.converted and model.folder is None
    ids = model.tokenizer(SKY)["input_ids"]
    hot = Ct2Sampling(temperature=1.5, top_p=1.0, top_k=0, seed=1)
    first = generate_ct2(model, ids, max_new_tokens=10, sampling=hot)
    assert generate_ct2(model, ids, max_new_tokens=10, sampling=hot) == first  # from memory
    clear_ct2_cache()


@pytest.mark.slow
def test_smollm2_on_ctranslate2_writes_the_demo_narration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real SmolLM2 on CTranslate2 int8, from the user's caches (converts when empty)."""
    if USER_CACHE:
        monkeypatch.setenv("AVGEN_CACHE_DIR", USER_CACHE)
    else:
        monkeypatch.delenv("AVGEN_CACHE_DIR")
    writer = SmolLM2ScriptWriter(runtime="ctranslate2")
    prompt = (
        "Explain to a curious ten-year-old why the sky is blue during the day and turns red "
        "and orange at sunset."
    )
    # 80 words (the demo asks 160) keeps the suite quick; the same decoding path either way.
    text = writer.write(prompt, max_words=80)
    assert writer.last_runtime == "ctranslate2"
    words = text.split()
    assert 30 <= len(words) <= 80, text
    assert re.search(r"[.!?][\"')]*$", text)
    assert {"sky", "blue", "sunset", "light"} & {w.lower().strip(".,!?") for w in words}
    assert SmolLM2ScriptWriter(runtime="ctranslate2").write(prompt, max_words=80) == text
    clear_ct2_cache()


def test_prepare_converts_once_and_never_fails_an_install(
    tiny_llama_dir: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from avgen_dagster.backends import llm_local
    from avgen_dagster.backends.llm_local import ModelSource

    monkeypatch.setattr(
        llm_local, "resolve_source", lambda _path: ModelSource(str(tiny_llama_dir), None)
    )
    assert llm_ct2.main(["--prepare"]) == 0
    assert "CTranslate2 int8" in capsys.readouterr().out
    assert (ct2_folder_for(tiny_llama_dir) / "model.bin").is_file()

    def missing(_path: object) -> ModelSource:
        raise BackendError("the SmolLM2 model is not installed")

    monkeypatch.setattr(llm_local, "resolve_source", missing)
    assert llm_ct2.main(["--prepare"]) == 0
    assert "not prepared (the SmolLM2 model is not installed)" in capsys.readouterr().err
