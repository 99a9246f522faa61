"""Per-stage timings of `make demo`'s pipeline (the talking-head job on embedded defaults).

Runs the real job (SmolLM2 script, Piper speech, landmark lip-sync, media chain) for the demo
prompt and the sample portrait on a throwaway Dagster instance, then reads each step's start
and end from the run's event log. Target (issue 2): ≤ 180 s for ~45 s of narration on 2 cores,
install excluded.

Usage: ``.venv/bin/python benchmarks/demo_stages.py [--max-words N]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_PROMPT = (
    "Explain to a curious ten-year-old why the sky is blue during the day and turns red and "
    "orange at sunset."
)
TARGET_S = 180.0


def time_demo_pipeline(max_words: int = 160) -> dict[str, float]:
    """Run the demo job once; return seconds per step plus ``"total"`` and ``"narration_s"``."""
    import dagster as dg

    with tempfile.TemporaryDirectory(prefix="avgen-bench-") as tmp:
        os.environ["DAGSTER_HOME"] = str(Path(tmp) / "home")
        os.environ["AVGEN_CONTENT_DIR"] = str(Path(tmp) / "content")
        os.environ["AVGEN_DATABASE_URL"] = f"sqlite:///{tmp}/app.db"
        Path(os.environ["DAGSTER_HOME"]).mkdir()
        shutil.copy(REPO / "deploy" / "dagster.local.yaml", Path(tmp) / "home" / "dagster.yaml")
        from avgen_dagster.intake import NewRequest
        from avgen_dagster.portraits import Upload
        from avgen_dagster.runner import submit_and_run

        instance = dg.DagsterInstance.get()
        start = time.perf_counter()
        result = submit_and_run(
            NewRequest(
                "bench", DEMO_PROMPT, None, Upload.from_path(REPO / "samples" / "portrait.png"),
                options={"max_words": max_words},
            ),
            instance=instance,
        )  # fmt: skip
        total = time.perf_counter() - start
        if result.status != "Completed":
            raise SystemExit(f"demo run failed: {result.error}")
        starts: dict[str, float] = {}
        timings: dict[str, float] = {}
        for rec in instance.all_logs(result.run_id):
            ev = rec.dagster_event
            if ev is None or ev.step_key is None:
                continue
            if ev.event_type == dg.DagsterEventType.STEP_START:
                starts[ev.step_key] = rec.timestamp
            elif ev.event_type == dg.DagsterEventType.STEP_SUCCESS:
                timings[ev.step_key] = rec.timestamp - starts[ev.step_key]
        audio = instance.get_latest_materialization_event(dg.AssetKey("stitched_mp4"))
        timings["narration_s"] = float(audio.asset_materialization.metadata["duration_s"].value)
        timings["total"] = total
        return timings


def print_demo_stages(timings: dict[str, float]) -> None:
    """Print the step table, the narration length and the total against the target."""
    print("\nmake demo pipeline, per stage (seconds):")
    for step, secs in timings.items():
        if step not in {"total", "narration_s"}:
            print(f"  {step:<40} {secs:7.2f}")
    print(f"  {'narration length (s)':<40} {timings['narration_s']:7.2f}")
    verdict = "OK" if timings["total"] <= TARGET_S else "OVER TARGET"
    print(
        f"  {'total wall time (incl. process warm-up)':<40} {timings['total']:7.2f}"
        f"   target <= {TARGET_S:.0f} s: {verdict}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-words", type=int, default=160)
    print_demo_stages(time_demo_pipeline(parser.parse_args().max_words))
