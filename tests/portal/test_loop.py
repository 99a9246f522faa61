"""The whole user loop: a request made through the portal's code path is picked up by the
request sensor, completed by the run it requests on the test's Dagster instance, listed by the
gallery, and the user is notified; a failed notification shows in the gallery."""

from __future__ import annotations

import dagster as dg
import pytest

from avgen_dagster.definitions import build_definitions
from avgen_dagster.resources import AppDatabaseResource
from avgen_dagster.sensors import notification_sensor, request_sensor
from avgen_dagster.store import AppDatabase
from avgen_dagster.store.notifications import get_notification
from avgen_dagster.store.requests import get_request
from tests.conftest import SAMPLE_PORTRAIT, AvgenEnv
from tests.portal.conftest import app_test, rendered

pytestmark = pytest.mark.slow


def _run(instance: dg.DagsterInstance, defs: dg.Definitions, result, job_name: str) -> None:
    for req in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    for run_request in result.run_requests:
        job = defs.resolve_job_def(run_request.job_name or job_name)
        outcome = job.execute_in_process(
            instance=instance,
            partition_key=run_request.partition_key,
            tags=run_request.tags,
            raise_on_error=False,
        )
        assert outcome.success or job.name == "notify_job"


def test_portal_request_to_gallery_and_notification(avgen_env: AvgenEnv, monkeypatch) -> None:
    import portal  # streamlit_app/portal.py (on sys.path via tests/portal/conftest.py)

    monkeypatch.setenv("AVGEN_SECRET_KEY", "loop-secret")
    monkeypatch.setenv("SENDGRID_API_KEY", "")  # email cannot be sent: a clear, recorded error
    db = AppDatabase(avgen_env.db_url)
    form = portal.RequestForm(
        mode=portal.MODE_SCRIPT, text="Hello from the portal.",
        portrait=SAMPLE_PORTRAIT.read_bytes(), portrait_name="me.png", genre="jazz",
        music_duration_s=3, clip_duration_s=1,
        image_count=1, clip_count=1, notify_date=None, notify_time=None, time_zone="UTC",
        email="loop@example.com",
    )  # fmt: skip
    request_id = portal.submit_form(db, "looper", form)
    with db.session() as s:
        assert get_request(s, request_id).status == "Queued"

    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions()
    resources = {"app_db": AppDatabaseResource(url=avgen_env.db_url)}
    tick = request_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert [r.run_key for r in tick.run_requests] == [request_id]
    at = app_test("looper").run()
    assert "Your content is being generated. Please check back later." in rendered(at)
    _run(instance, defs, tick, "generation_job")

    at = app_test("looper").run()
    page = rendered(at)
    assert request_id in page and "Hello from the portal." in page
    assert "/media/" in page and "talking_head.mp4" in page

    # Due at once (no notification time): the notify run fails for want of a SendGrid key,
    # and the gallery says so.
    tick = notification_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert [r.run_key for r in tick.run_requests] == [f"notify-{request_id}-1"]
    _run(instance, defs, tick, "notify_job")
    with db.session() as s:
        assert "SENDGRID_API_KEY is not set" in get_notification(s, request_id).last_error
    with db.session() as s:
        note = get_notification(s, request_id)
        note.status = "Failed"  # as after the last attempt
    page = rendered(app_test("looper").run())
    assert "Notification could not be sent" in page and "SENDGRID_API_KEY" in page
