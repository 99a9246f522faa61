"""The request sensor: queued requests become one run each; partitions added once."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from avgen_dagster.definitions import build_definitions
from avgen_dagster.intake import NewRequest, submit_request
from avgen_dagster.portraits import Upload
from avgen_dagster.resources import AppDatabaseResource
from avgen_dagster.sensors import request_sensor
from avgen_dagster.store import AppDatabase
from avgen_dagster.store.models import utcnow
from avgen_dagster.store.requests import get_request, list_requests, outputs_of
from tests.conftest import SAMPLE_PORTRAIT, AvgenEnv


def _submit(env: AvgenEnv, user_id: str, script: str = "Hello from the sensor test.") -> str:
    return submit_request(
        AppDatabase(env.db_url),
        env.content,
        NewRequest(
            user_id=user_id,
            prompt=None,
            script=script,
            portrait=Upload("portrait.png", SAMPLE_PORTRAIT.read_bytes()),
            options={},
        ),
    )


def _tick(env: AvgenEnv, instance: dg.DagsterInstance):
    context = dg.build_sensor_context(
        instance=instance, resources={"app_db": AppDatabaseResource(url=env.db_url)}
    )
    return request_sensor(context)


def test_new_requests_get_one_run_each_and_new_partitions(avgen_env: AvgenEnv) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("user_id", ["known"])
    a = _submit(avgen_env, "known")
    b = _submit(avgen_env, "newcomer")
    c = _submit(avgen_env, "newcomer", "A second request from the same user.")

    result = _tick(avgen_env, instance)
    assert isinstance(result, dg.SensorResult)
    runs = {r.run_key: r for r in result.run_requests}
    assert set(runs) == {a, b, c}
    assert runs[a].partition_key == "known" and runs[b].partition_key == "newcomer"
    assert runs[c].tags == {
        "avgen/request_id": c,
        "avgen/user_id": "newcomer",
        "avgen/attempt": "0",
    }
    (added,) = result.dynamic_partitions_requests
    assert added.partitions_def_name == "user_id"
    assert list(added.partition_keys) == ["newcomer"]
    with AppDatabase(avgen_env.db_url).session() as s:
        assert {get_request(s, x).status for x in (a, b, c)} == {"Processing"}

    # A second tick requests nothing again.
    second = _tick(avgen_env, instance)
    assert isinstance(second, dg.SkipReason)


def test_a_stranded_submission_is_requested_again_under_the_same_run_key(
    avgen_env: AvgenEnv,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    rid = _submit(avgen_env, "stranded")
    first = _tick(avgen_env, instance)
    assert [r.run_key for r in first.run_requests] == [rid]
    # The daemon died before launching the run: no run id after the grace period.
    with AppDatabase(avgen_env.db_url).session() as s:
        get_request(s, rid).submitted_at = utcnow() - timedelta(minutes=11)
    again = _tick(avgen_env, instance)
    assert [r.run_key for r in again.run_requests] == [rid]  # Dagster dedupes by run key


def test_no_queued_requests_is_a_skip(avgen_env: AvgenEnv) -> None:
    result = _tick(avgen_env, dg.DagsterInstance.ephemeral())
    assert isinstance(result, dg.SkipReason)


@pytest.mark.slow
def test_a_queued_request_is_picked_up_and_completed(avgen_env: AvgenEnv) -> None:
    """Intake → sensor → the run it requests, on the test's instance → Completed."""
    instance = dg.DagsterInstance.ephemeral()
    rid = _submit(avgen_env, "looper")
    result = _tick(avgen_env, instance)
    (run_request,) = result.run_requests
    for req in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    job = build_definitions().resolve_job_def("talking_head_job")
    run = job.execute_in_process(
        instance=instance, partition_key=run_request.partition_key, tags=run_request.tags
    )
    assert run.success
    with AppDatabase(avgen_env.db_url).session() as s:
        (req,) = list_requests(s, "looper")
        assert req.request_id == rid and req.status == "Completed"
        assert req.run_id == run.run_id
        assert outputs_of(req).talking_head_mp4.endswith("/stitched_mp4/talking_head.mp4")
