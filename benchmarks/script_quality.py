"""Embedded script quality and speed: before and after the tuning, and on CTranslate2.

For each of the 30 prompts in ``benchmarks/prompts/scripts.jsonl`` (science, history,
how-to, study, cooking, travel, health, tech, kids' questions; each with its ``max_words``)
the embedded SmolLM2 writer runs three times, interleaved so all see the same machine load:

- **before**: :data:`avgen_dagster.backends.text.BASELINE` (the previous prompt, greedy
  decoding with repetition penalty 1.15, one sampled retry when too short, no ranking, no
  chatter stripping, torch's default thread count), on transformers;
- **after**: :data:`avgen_dagster.backends.text.TUNED` on transformers (float32);
- **ct2**: :data:`~avgen_dagster.backends.text.TUNED` on CTranslate2 (int8,
  :mod:`avgen_dagster.backends.llm_ct2`), the embedded default.

Measures (defined in :mod:`avgen_dagster.backends.script_quality`): on-topic rate, mean
``|words − max_words| / max_words``, scripts within ±15 %, repeated sentences, runaway lists,
chatter sentences, generation seconds and tokens/s; plus model load time from the GGUF file
(before), from the conversion cache (after) and from the CTranslate2 cache (ct2), each after
clearing the process cache. Targets: on-topic ≥ 80 %, no repeated sentence and no chatter in
any script.

``--demo N`` instead times the demo prompt (the Makefile's ``DEMO_PROMPT``, 160 words) end to
end through ``TextBackendResource().plan_for_prompt`` (what the ``script`` asset calls) on
each runtime, interleaved, N rounds: "cold" clears the process's model caches first (the
model loads from the disk caches, as in a fresh ``make demo`` process after the first),
"warm" reuses the loaded model.

Usage::

    .venv/bin/python benchmarks/script_quality.py [--only before|after|ct2] [--ids a,b]
        [--out results.json]
    .venv/bin/python benchmarks/script_quality.py --rescore results.json
    .venv/bin/python benchmarks/script_quality.py --demo 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMPTS = REPO / "benchmarks" / "prompts" / "scripts.jsonl"
MODES = ("before", "after", "ct2")
RUNTIMES = {"before": "transformers", "after": "transformers", "ct2": "ctranslate2"}
DEMO_PROMPT = (
    "Explain to a curious ten-year-old why the sky is blue during the day and turns red and "
    "orange at sunset."
)


def load_prompts(ids: list[str] | None = None) -> list[dict]:
    """The benchmark prompts (``id``, ``category``, ``max_words``, ``prompt``)."""
    rows = [json.loads(line) for line in PROMPTS.read_text().splitlines() if line.strip()]
    return [r for r in rows if not ids or r["id"] in ids]


def measure_load() -> dict[str, float]:
    """Load seconds: from the GGUF file (no conversion cache), from the cache, and the
    CTranslate2 model from its cache (tokenizer included, one thread)."""
    from avgen_dagster.backends.llm_ct2 import clear_ct2_cache, load_ct2
    from avgen_dagster.backends.llm_local import (
        clear_model_cache,
        ensure_transformers_folder,
        load_model,
        resolve_source,
    )

    source = resolve_source(None)
    out: dict[str, float] = {}
    folder = ensure_transformers_folder(source)  # make sure the converted copies exist
    assert folder is not None
    load_ct2(folder, threads=1)
    for mode, cached in (("before", False), ("after", True)):
        clear_model_cache()
        start = time.perf_counter()
        load_model(source, convert_cache=cached)
        out[mode] = time.perf_counter() - start
    clear_model_cache()
    clear_ct2_cache()
    start = time.perf_counter()
    load_ct2(folder, threads=1)
    out["ct2"] = time.perf_counter() - start
    return out


def run(prompts: list[dict], modes: tuple[str, ...]) -> dict[str, list[dict]]:
    """Write every prompt's script in each mode; per-script rows."""
    from avgen_dagster.backends.script_quality import score_script
    from avgen_dagster.backends.text import BASELINE, TUNED, SmolLM2ScriptWriter
    from avgen_dagster.errors import BackendError

    settings = {"before": BASELINE, "after": TUNED, "ct2": TUNED}
    writers = {
        m: SmolLM2ScriptWriter(settings=settings[m], runtime=RUNTIMES[m])  # type: ignore[arg-type]
        for m in MODES
    }
    rows: dict[str, list[dict]] = {m: [] for m in modes}
    for i, p in enumerate(prompts, 1):
        for mode in modes:
            writer = writers[mode]
            try:
                text, error = writer.write(p["prompt"], max_words=p["max_words"]), None
            except BackendError as exc:
                text, error = "", str(exc)
            score = score_script(p["prompt"], text, p["max_words"])
            rows[mode].append(
                {
                    **p,
                    "script": text,
                    "error": error,
                    "seconds": writer.last_generation_seconds or 0.0,
                    "new_tokens": writer.last_new_tokens,
                    "candidates": len(writer.last_scores),
                    **asdict(score),
                }
            )
            print(
                f"[{i:2d}/{len(prompts)}] {mode:6s} {p['id']:15s} {score.words:3d}/"
                f"{p['max_words']} words, on-topic {score.on_topic!s:5s} chatter "
                f"{score.chatter} repeats {score.repeated} "
                f"{rows[mode][-1]['seconds']:5.1f} s",
                file=sys.stderr,
                flush=True,
            )
    return rows


def summarize(rows: list[dict], load_s: float | None) -> dict[str, str]:
    """The summary column of one mode."""
    n = len(rows)
    seconds = sum(r["seconds"] for r in rows)
    tokens = sum(r["new_tokens"] for r in rows)
    with_chatter = sum(1 for r in rows if r["chatter"])
    with_repeats = sum(1 for r in rows if r["repeated"])
    return {
        "on-topic rate": f"{sum(r['on_topic'] for r in rows) / n:.0%}",
        "mean |length error|": f"{statistics.mean(r['length_error'] for r in rows):.1%}",
        "within ±15 % of max_words": f"{sum(r['length_error'] <= 0.15 for r in rows)}/{n}",
        "repeated sentences (scripts)": f"{sum(r['repeated'] for r in rows)} ({with_repeats})",
        "runaway lists": str(sum(r["runaway_list"] for r in rows)),
        "chatter sentences (scripts)": f"{sum(r['chatter'] for r in rows)} ({with_chatter})",
        "all checks pass": f"{sum(_acceptable(r) for r in rows)}/{n}",
        "failed (no usable text)": str(sum(1 for r in rows if r["error"])),
        "model load, s": f"{load_s:.1f}" if load_s is not None else "-",
        "generation, s per script (mean)": f"{seconds / n:.1f}",
        "tokens/s": f"{tokens / seconds:.1f}" if seconds else "-",
        "candidates per script (mean)": f"{statistics.mean(r['candidates'] for r in rows):.2f}",
    }


def _acceptable(r: dict) -> bool:
    return (
        r["on_topic"]
        and r["length_error"] <= 0.15
        and not r["repeated"]
        and not r["runaway_list"]
        and not r["chatter"]
    )


def print_tables(rows: dict[str, list[dict]], load: dict[str, float]) -> None:
    """Markdown: the summary side by side, then one line per prompt."""
    modes = list(rows)
    cols = {m: summarize(rows[m], load.get(m)) for m in modes}
    print("| measure | " + " | ".join(modes) + " |")
    print("|---|" + "---|" * len(modes))
    for key in cols[modes[0]]:
        print(f"| {key} | " + " | ".join(cols[m][key] for m in modes) + " |")
    print()
    head = " | ".join(f"{m} words / on-topic / chatter / repeats / s" for m in modes)
    print(f"| prompt | max | {head} |")
    print("|---|---|" + "---|" * len(modes))
    for i, r in enumerate(rows[modes[0]]):
        cells = []
        for m in modes:
            x = rows[m][i]
            cells.append(
                f"{x['words']} / {'yes' if x['on_topic'] else 'NO'} / {x['chatter']} / "
                f"{x['repeated']} / {x['seconds']:.1f}"
            )
        print(f"| {r['id']} | {r['max_words']} | " + " | ".join(cells) + " |")


def rescore(path: Path) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """A saved ``--out`` file's scripts measured again with the current measures.

    The scripts, times and token counts are those saved; only the scores are recomputed
    (e.g. after a chatter pattern is added, to count it in both columns).
    """
    from avgen_dagster.backends.script_quality import score_script

    saved = json.loads(path.read_text())
    rows = {
        mode: [
            {**r, **asdict(score_script(r["prompt"], r["script"], r["max_words"]))}
            for r in mode_rows
        ]
        for mode, mode_rows in saved["rows"].items()
    }
    return rows, saved["load_s"]


def demo(rounds: int) -> None:
    """Seconds of ``plan_for_prompt(DEMO_PROMPT, max_words=160)`` per runtime, cold and warm."""
    import os

    from avgen_dagster.backends.llm_ct2 import clear_ct2_cache
    from avgen_dagster.backends.llm_local import clear_model_cache
    from avgen_dagster.backends.text import ENV_TEXT_RUNTIME
    from avgen_dagster.resources.backends import TextBackendResource

    times: dict[tuple[str, str], list[float]] = {}
    for i in range(rounds):
        for runtime in ("transformers", "ctranslate2"):
            os.environ[ENV_TEXT_RUNTIME] = runtime
            for state in ("cold", "warm"):
                if state == "cold":
                    clear_model_cache()
                    clear_ct2_cache()
                start = time.perf_counter()
                plan = TextBackendResource().plan_for_prompt(DEMO_PROMPT, max_words=160)
                took = time.perf_counter() - start
                times.setdefault((runtime, state), []).append(took)
                print(
                    f"[{i + 1}/{rounds}] {runtime:12s} {state}: {took:5.1f} s, "
                    f"{plan.word_count} words",
                    file=sys.stderr,
                    flush=True,
                )
    os.environ.pop(ENV_TEXT_RUNTIME, None)
    print("| demo prompt, plan_for_prompt (160 words) | cold, s | warm, s |")
    print("|---|---|---|")
    for runtime in ("transformers", "ctranslate2"):
        cells = [
            f"{statistics.median(times[(runtime, st)]):.1f} "
            f"({min(times[(runtime, st)]):.1f}–{max(times[(runtime, st)]):.1f})"
            for st in ("cold", "warm")
        ]
        print(f"| {runtime} (median, range of {rounds}) | " + " | ".join(cells) + " |")


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=MODES, help="run one mode only")
    parser.add_argument("--ids", help="comma-separated prompt ids (default: all 30)")
    parser.add_argument("--out", type=Path, help="write every script and score as JSON")
    parser.add_argument("--rescore", type=Path, help="re-measure a saved --out file, no model")
    parser.add_argument("--demo", type=int, metavar="N", help="time the demo prompt, N rounds")
    args = parser.parse_args()
    if args.demo:
        demo(args.demo)
        return
    if args.rescore:
        print_tables(*rescore(args.rescore))
        return
    modes = (args.only,) if args.only else MODES
    prompts = load_prompts(args.ids.split(",") if args.ids else None)
    load = measure_load()
    print(
        f"load: GGUF {load['before']:.1f} s, conversion cache {load['after']:.1f} s, "
        f"CTranslate2 {load['ct2']:.1f} s",
        file=sys.stderr,
    )
    rows = run(prompts, modes)
    print_tables(rows, load)
    if args.out:
        args.out.write_text(json.dumps({"load_s": load, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
