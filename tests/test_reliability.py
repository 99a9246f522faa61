"""One request never touches another's files or outputs: overlapping `avgen generate`s of one
user, and a UI-style re-execution of a failed run after the same user's next request ran."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from hashlib import sha256
from pathlib import Path

import dagster as dg
import pytest

from avgen_dagster.definitions import build_definitions
from avgen_dagster.intake import NewRequest
from avgen_dagster.media.probe import probe_media
from avgen_dagster.portraits import Upload
from avgen_dagster.resources import LipsyncBackendResource
from avgen_dagster.runner import submit_and_run
from avgen_dagster.store import AppDatabase, status
from avgen_dagster.store.requests import get_request, outputs_of
from tests.conftest import SAMPLE_PORTRAIT, AvgenEnv

pytestmark = pytest.mark.slow

SHORT = "Hello there."
LONG = (
    "This is a much longer message. It has four sentences, each of them spoken aloud. "
    "So its video lasts several seconds longer than the other one. Goodbye for now."
)


def _outputs_of_asset(env: AvgenEnv, user: str, rid: str, asset: str) -> object:
    """The pickled output Dagster stored for one request's asset (the request-scoped path)."""
    path = env.content / user / rid / ".outputs" / f"{asset}.pickle"
    return pickle.loads(path.read_bytes())


def test_overlapping_generates_of_one_user_keep_to_their_own_request(
    avgen_env: AvgenEnv, tmp_path: Path
) -> None:
    avgen = Path(sys.executable).parent / "avgen"
    procs = []
    for name, text in (("short", SHORT), ("long", LONG)):
        script = tmp_path / f"{name}.txt"
        script.write_text(text)
        procs.append(
            subprocess.Popen(
                [
                    str(avgen),
                    "generate",
                    "--user-id",
                    "twin",
                    "--portrait",
                    str(SAMPLE_PORTRAIT),
                    "--script-file",
                    str(script),
                    "--talking-head-only",
                    "--json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=os.environ.copy(),
            )
        )
    outs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        outs.append(json.loads(stdout))
    short, long_ = outs
    assert short["status"] == long_["status"] == "Completed"
    assert short["request_id"] != long_["request_id"]
    for out, text in ((short, SHORT), (long_, LONG)):
        rid = out["request_id"]
        mp4 = Path(out["stitched_mp4"])
        assert mp4.parent.parent == avgen_env.content / "twin" / rid  # its own folder
        # Every output this request's run read or wrote is its own.
        assert _outputs_of_asset(avgen_env, "twin", rid, "script").text == text
        assert _outputs_of_asset(avgen_env, "twin", rid, "request").request_id == rid
        spoken = _outputs_of_asset(avgen_env, "twin", rid, "tts_clips")
        duration = sum(c.duration_s for c in spoken.clips)
        assert abs(probe_media(mp4).duration_s - duration) < 1.0
    assert (
        probe_media(long_["stitched_mp4"]).duration_s
        > probe_media(short["stitched_mp4"]).duration_s + 3
    )


def _talking_head_job() -> dg.JobDefinition:
    """The job as the code location defines it (a re-execution reconstructs it by name)."""
    return build_definitions().resolve_job_def("talking_head_job")


def test_a_reexecution_of_a_failed_run_touches_only_its_own_request(
    avgen_env: AvgenEnv, tmp_path: Path
) -> None:
    """Request A fails at lip-sync (a missing Wav2Lip checkpoint); the same user's request B
    completes; then A's failed run is re-executed from the failure, as the Dagster UI does.
    The re-execution loads A's outputs (A's script), completes A, and leaves B's files and
    record exactly as they were."""
    (tmp_path / "instance").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "instance"))
    broken = {"lipsync_backend": LipsyncBackendResource(backend="wav2lip", checkpoint="/x.pth")}

    def new(text: str) -> NewRequest:
        return NewRequest("same_user", None, text, Upload.from_path(SAMPLE_PORTRAIT))

    a = submit_and_run(new(LONG), resources=broken, instance=instance, job_name="talking_head_job")
    assert a.status == "Failed" and "lipsync_segments" in (a.error or "") and "/x.pth" in a.error
    b = submit_and_run(new(SHORT), instance=instance, job_name="talking_head_job")
    assert b.status == "Completed"
    b_mp4 = Path(b.outputs.talking_head_mp4)
    b_before = sha256(b_mp4.read_bytes()).hexdigest()

    result = dg.execute_job(
        dg.reconstructable(_talking_head_job),
        instance=instance,
        reexecution_options=dg.ReexecutionOptions.from_failure(a.run_id, instance),
        # The partition, as the UI passes it; no avgen tag: the request is found through the
        # parent run (dagster/parent_run_id), as for a re-execution that drops custom tags.
        tags={"dagster/partition": "same_user"},
    )
    assert result.success
    assert "request" not in {e.step_key for e in result.get_step_success_events()}  # reused
    db = AppDatabase(avgen_env.db_url)
    with db.session() as s:
        req_a, req_b = get_request(s, a.request_id), get_request(s, b.request_id)
        out_a = outputs_of(req_a)
        assert req_a.status == "Completed" and req_a.run_id == result.run_id
        assert any("re-execution" in (e.reason or "") for e in status.history(s, a.request_id))
        assert outputs_of(req_b) == b.outputs and req_b.run_id == b.run_id
    assert (
        Path(out_a.talking_head_mp4).parent.parent == avgen_env.content / "same_user" / a.request_id
    )
    assert Path(out_a.script).read_text() == LONG
    assert sha256(b_mp4.read_bytes()).hexdigest() == b_before
    assert probe_media(out_a.talking_head_mp4).duration_s > probe_media(b_mp4).duration_s + 3
