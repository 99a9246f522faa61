"""Schemathesis (its CLI, as a user would run it) against the live OpenAPI schema of the real
server: every operation, every phase (examples, coverage, fuzzing, stateful), valid and invalid
requests authenticated with a real key. No 5xx; every response conforms to the schema (status
documented, content type, headers, body); invalid data rejected; auth enforced.

One check is left out: ``positive_data_acceptance`` (a schema-valid request must be accepted).
The schema cannot say "a photo with a face", "exactly one of prompt and script" or "a cursor
this API returned", so schema-valid random submissions are rightly refused with 422 problems.
(The pytest plugin's lazy fixtures are not usable here: schemathesis 4.32 reads
``request.node._nodeid``, which pytest 9 no longer has.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.conftest import portrait_files, serve_api
from tests.conftest import AvgenEnv

EXAMPLES = 25


def test_schemathesis_finds_no_5xx_and_every_response_conforms(
    api_settings: AvgenEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AVGEN_API_RATE_LIMIT", "100000/minute")  # test behaviour, not limits
    monkeypatch.setenv("AVGEN_API_SUBMIT_RATE_LIMIT", "100000/minute")
    server, stop = serve_api(api_settings, monkeypatch, erase_wait_s=0.5, max_wait_s=1.0)
    try:
        key = server.key("fuzz")
        with server.client(key) as client:  # a portrait on file: JSON submissions can succeed
            made = client.post("/v1/requests", data={"script": "On file."}, files=portrait_files())
            assert made.status_code == 202, made.text
        cli = Path(sys.executable).parent / "schemathesis"
        run = subprocess.run(
            [
                str(cli), "run", f"{server.url}/openapi.json",
                "--header", f"Authorization: Bearer {key}",
                "--checks", "all", "--exclude-checks", "positive_data_acceptance",
                "--max-examples", str(EXAMPLES), "--workers", "1",
                "--request-timeout", "60", "--no-color",
                "--report", "junit", "--report-dir", str(tmp_path),
            ],
            capture_output=True, text=True, timeout=900, cwd=tmp_path,
        )  # fmt: skip
    finally:
        stop()
    summary = run.stdout[-4000:]
    assert run.returncode == 0, summary + run.stderr[-2000:]
    tested = re.search(r"Selected: (\d+)/\1\s+Tested: \1\b", summary)
    assert tested and int(tested.group(1)) == 7, summary  # every operation of the schema
    assert " passed" in summary and "failure" not in summary.lower(), summary
