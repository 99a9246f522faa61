"""The `avgen` command: bad input is refused before anything is written; a real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

from avgen_dagster.cli import app
from tests.conftest import SAMPLE_PORTRAIT, AvgenEnv

# Keep the visual package small in tests: 1 image, 1 clip of 1 s, 3 s of music.
SMALL = ["--images", "1", "--clips", "1", "--clip-duration", "1", "--music-duration", "3"]


def _script(tmp_path: Path, text: str) -> str:
    path = tmp_path / "script.txt"
    path.write_text(text)
    return str(path)


# The bad-input table of `generate` (and of `request` and the portal, with the same messages)
# is tests/test_intake.py.


@pytest.mark.slow
def test_generate_runs_the_job_and_prints_json(avgen_env: AvgenEnv, tmp_path: Path) -> None:
    """The real console script; a one-word script gives a clip too short to measure (0.4 s)."""
    avgen = Path(sys.executable).parent / "avgen"
    proc = subprocess.run(
        [
            str(avgen),
            "generate",
            "--user-id",
            "cli_user",
            "--portrait",
            str(SAMPLE_PORTRAIT),
            "--script-file",
            _script(tmp_path, "Hi."),
            "--json",
            *SMALL,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "Completed" and out["user_id"] == "cli_user"
    mp4, playlist = Path(out["stitched_mp4"]), Path(out["hls_playlist"])
    assert mp4.is_absolute() and mp4.is_file() and mp4.suffix == ".mp4"
    assert playlist.is_absolute() and playlist.is_file()
    assert str(mp4).startswith(str(avgen_env.content / "cli_user" / out["request_id"]))
    assert Path(out["music_video"]).is_file() and Path(out["music"]).suffix == ".m4a"
    assert len(out["images"]) == 1
    for key in ("final_video", "hls_master", "captions_vtt", "captions_srt"):
        path = Path(out[key])
        assert path.is_absolute() and path.is_file(), key
    assert Path(out["final_video"]).suffix == ".mp4" and Path(out["hls_master"]).suffix == ".m3u8"
    assert "stitched_mp4" in proc.stderr  # progress per stage
    # The run is in the instance at DAGSTER_HOME, as `dagster dev` would show it.
    instance = dg.DagsterInstance.from_config(str(avgen_env.home))
    run = instance.get_run_by_id(out["run_id"])
    assert run is not None and run.is_success and run.job_name == "generation_job"
    assert run.tags["avgen/request_id"] == out["request_id"]


def test_an_unreachable_database_is_a_clear_error_without_the_password(
    avgen_env: AvgenEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Postgres URL nobody answers on: exit 2, the URL without its password, no traceback."""
    monkeypatch.setenv("AVGEN_DATABASE_URL", "postgresql+psycopg://avgen:s3cret@127.0.0.1:9/app")
    for args in (
        ["request", "--user-id", "u", "--portrait", str(SAMPLE_PORTRAIT), "--prompt", "Tides"],
        ["user", "create", "u"],
        ["db", "upgrade"],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "app database at postgresql+psycopg://avgen:***@127.0.0.1:9/app is unreachable" in (
            result.output
        )
        assert "s3cret" not in result.output and "Traceback" not in result.output
    assert not avgen_env.content.exists()
