"""The talking-head job with Wav2Lip on a driving video (random-weight checkpoint in the
published format): face and no-face stretches, the narration's length, the CLI's checks."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

from avgen_dagster.cli import app
from avgen_dagster.intake import NewRequest
from avgen_dagster.media.probe import probe_media
from avgen_dagster.portraits import Upload
from avgen_dagster.resources import LipsyncBackendResource
from avgen_dagster.runner import submit_and_run
from tests.conftest import AvgenEnv

pytestmark = pytest.mark.slow


def test_driving_video_through_the_job(
    avgen_env: AvgenEnv, driving_video: Path, checkpoint: Path
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    out = submit_and_run(
        NewRequest(
            user_id="driver",
            prompt=None,
            script="Hello there. This video was driven by a recording.",
            portrait=Upload.from_path(driving_video),
            options={"driving_mode": "pingpong"},
        ),
        instance=instance,
        resources={
            "lipsync_backend": LipsyncBackendResource(backend="wav2lip", checkpoint=str(checkpoint))
        },
        job_name="talking_head_job",
    )
    assert out.status == "Completed", out.error
    meta = instance.get_latest_materialization_event(
        dg.AssetKey("lipsync_segments")
    ).asset_materialization.metadata
    assert meta["backend"].value == "wav2lip" and meta["mode"].value == "pingpong"
    faces = [seg for seg in meta["driving_segments"].value if seg[2]]
    assert len(faces) == 2 and 0 < meta["face_frames"].value < meta["frames"].value
    narration = (
        instance.get_latest_materialization_event(dg.AssetKey("tts_clips"))
        .asset_materialization.metadata["total_duration_s"]
        .value
    )
    info = probe_media(out.outputs.talking_head_mp4)
    assert abs(info.duration_s - narration) <= 1 / 25 + 1e-3  # one frame
    assert abs(info.av_drift_s) <= 1 / 25


def test_cli_refuses_a_driving_video_without_wav2lip(
    avgen_env: AvgenEnv, driving_video: Path
) -> None:
    result = CliRunner().invoke(
        app, ["generate", "--user-id", "u", "--prompt", "hi", "--portrait", str(driving_video)]
    )
    assert result.exit_code == 2 and "animates still photos only" in result.output
    result = CliRunner().invoke(
        app,
        ["generate", "--user-id", "u", "--prompt", "hi", "--portrait", str(driving_video),
         "--wav2lip-checkpoint", "/no/such/wav2lip.pth"],
    )  # fmt: skip
    assert result.exit_code == 2 and "/no/such/wav2lip.pth" in result.output
    assert not avgen_env.content.exists()
