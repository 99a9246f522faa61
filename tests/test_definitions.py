"""The code location loads the way `dagster dev` loads it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

from avgen_dagster.definitions import build_definitions
from avgen_dagster.partitions import user_partitions

REPO = Path(__file__).resolve().parent.parent
TALKING_HEAD_ASSETS = {
    "request",
    "script",
    "tts_clips",
    "normalized_audio",
    "lipsync_segments",
    "stitched_mp4",
    "hls",
    "final_video",
    "final_hls",
    "content_record",
}


def test_definitions_have_the_talking_head_graph() -> None:
    defs = build_definitions()
    job = defs.resolve_job_def("talking_head_job")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert keys == TALKING_HEAD_ASSETS
    everything = defs.resolve_job_def("generation_job")
    keys = {k.to_user_string() for k in everything.asset_layer.executable_asset_keys}
    assert keys == TALKING_HEAD_ASSETS | {"images", "music", "video_clips", "music_video"}
    assert defs.resolve_job_def("notify_job") is not None
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.partitions_def == user_partitions, key
        assert node.group_name in {"talking_head", "visuals", "final_cut", "delivery"}
        assert node.description, key
        assert node.kinds, key
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    delivered = ("delivered_loudness_on_target", "delivered_true_peak_limited")
    assert checks == {
        ("normalized_audio", "loudness_on_target"),
        ("normalized_audio", "true_peak_limited"),
        ("stitched_mp4", "av_durations_match"),
        ("hls", "hls_playlist_valid"),
        ("final_video", "captions_in_sync"),
        ("final_video", "final_loudness_on_target"),
        ("final_video", "final_true_peak_limited"),
        ("final_hls", "hls_ladder_valid"),
        *((asset, name) for asset in ("stitched_mp4", "hls", "music", "music_video", "final_hls")
          for name in delivered),
    }  # fmt: skip
    for key in graph.asset_check_keys:  # a request is Completed only after every check
        assert graph.get_check_spec(key).blocking, key
    for sensor in (
        "request_sensor",
        "notification_sensor",
        "request_failure_sensor",
        "request_canceled_sensor",
        "lost_run_sensor",
    ):
        assert defs.resolve_sensor_def(sensor) is not None
    assert isinstance(user_partitions, dg.DynamicPartitionsDefinition)
    assert user_partitions.name == "user_id"


def test_dagster_definitions_validate_cli(tmp_path: Path) -> None:
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr
