"""Production config files: deploy/dagster.yaml, the Helm values, the Dockerfile.

Docker and Helm cannot run on this machine: the values file is checked against the key paths
the official chart documents (helm_values_keys.txt) and against Dagster's own instance
schema; the Dockerfile's install steps against the Makefile's.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VALUES = DEPLOY / "helm" / "values.yaml"
KEYS_FILE = Path(__file__).with_name("helm_values_keys.txt")
PG_ENV = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "secret",
    "DAGSTER_PG_DB": "dagster",
}
USER_LIMIT = {"key": "avgen/user_id", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}


def _validated(config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    validated, _ = dagster_instance_config(str(tmp_path))
    return dict(validated)


def test_production_instance_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    config = _validated(raw, tmp_path)
    pg = config["storage"]["postgres"]["postgres_db"]
    assert pg["scheme"] == "postgresql+psycopg2"
    # Every credential is read from the environment, none written in the file.
    raw_pg = raw["storage"]["postgres"]["postgres_db"]
    assert {k: v for k, v in raw_pg.items() if k != "scheme"} == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
    }
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    runs = config["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] >= 2
    assert runs["tag_concurrency_limits"] == [USER_LIMIT]
    assert config["concurrency"]["pools"]["default_limit"] >= 1


def test_laptop_instance_config_stays_sqlite(tmp_path: Path) -> None:
    from dagster._core.instance import DagsterInstance, InstanceRef

    raw = yaml.safe_load((DEPLOY / "dagster.local.yaml").read_text())
    assert "storage" not in raw  # Dagster's default: SQLite under DAGSTER_HOME
    assert raw["concurrency"]["runs"]["tag_concurrency_limits"] == [USER_LIMIT]
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(raw))
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path))) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"


def test_run_limits_in_the_coordinator_are_refused_beside_pools(tmp_path: Path) -> None:
    """Why the Helm values keep run limits under `concurrency`, not in the run coordinator."""
    config = {
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"max_concurrent_runs": 4},
        },
        "concurrency": {"pools": {"default_limit": 1}},
    }
    with pytest.raises(DagsterInvalidConfigError, match="incompatible"):
        _validated(config, tmp_path)


def _flatten(node: Any, prefix: str = "") -> list[str]:
    """Key paths of a YAML tree: dicts by '.', list items as '[]'; leaves end a path."""
    if isinstance(node, dict):
        out = []
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out += _flatten(value, path) if isinstance(value, dict | list) and value else [path]
        return out
    if isinstance(node, list):
        out = []
        for item in node:
            nested = isinstance(item, dict | list)
            out += _flatten(item, f"{prefix}[]") if nested else [f"{prefix}[]"]
        return out
    return [prefix]


def _allowed(path: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith(".*"):
            base = pattern[:-2]
            if path == base or path.startswith(base + ".") or path.startswith(base + "["):
                return True
        elif path == pattern:
            return True
    return False


def _values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


def test_helm_values_use_only_keys_the_chart_documents() -> None:
    patterns = [
        line.strip()
        for line in KEYS_FILE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    paths = _flatten(_values())
    assert len(paths) > 30
    unknown = [p for p in paths if not _allowed(p, patterns)]
    assert not unknown, f"keys the Dagster chart does not document: {unknown}"
    # The checker itself rejects what it should.
    assert not _allowed("runLauncher.config.k8sRunLauncher.gpu", patterns)
    assert not _allowed("dagsterDaemon.runCoordinator.config.queuedRunCoordinator.x", patterns)


def test_helm_values_render_the_production_instance_settings(tmp_path: Path) -> None:
    """The values' storage and limits, as the chart renders them, equal deploy/dagster.yaml's."""
    values = _values()
    production = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())

    pg = values["postgresql"]
    assert pg["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert pg["postgresqlPassword"] == ""  # from the secret, never in the file
    assert pg["postgresqlScheme"] == production["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["global"]["postgresqlSecretName"]

    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert "maxConcurrentRuns" not in queued and "tagConcurrencyLimits" not in queued

    conc = values["concurrency"]
    assert conc["enabled"] is True
    # What the chart's dagsterYaml.concurrency template writes into the instance's dagster.yaml.
    rendered = {
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"dequeue_interval_seconds": queued["dequeueIntervalSeconds"]},
        },
        "concurrency": {
            "pools": {
                "default_limit": conc["pools"]["defaultLimit"],
                "granularity": conc["pools"]["granularity"],
            },
            "runs": {
                "max_concurrent_runs": conc["runs"]["maxConcurrentRuns"],
                "tag_concurrency_limits": conc["runs"]["tagConcurrencyLimits"],
            },
        },
    }
    config = _validated(rendered, tmp_path)
    ours = production["concurrency"]
    assert config["concurrency"]["runs"]["tag_concurrency_limits"] == [USER_LIMIT]
    assert ours["runs"]["tag_concurrency_limits"] == [USER_LIMIT]
    assert config["concurrency"]["pools"]["granularity"] == ours["pools"]["granularity"]


def test_helm_values_code_location_and_gpu_runs() -> None:
    values = _values()
    module = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", module]
    assert deployment["image"]["repository"] and str(deployment["image"]["tag"])

    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    run_cfg = launcher["config"]["k8sRunLauncher"]["runK8sConfig"]
    assert run_cfg["containerConfig"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    pod = run_cfg["podSpecConfig"]
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    # The chart's own images and the code's dagster come from the same release.
    lock = (REPO / "requirements.lock").read_text()
    dagster_pin = re.search(r"^dagster==(\S+)$", lock, re.M)
    assert dagster_pin and values["dagsterWebserver"]["image"]["tag"] == dagster_pin.group(1)


def _pip_steps(lines: list[str]) -> list[list[str]]:
    """The arguments of each ``pip install`` command, minus quiet/version-check flags."""
    steps = []
    for line in lines:
        if "pip install" not in line:
            continue
        args = shlex.split(line.split("pip install", 1)[1])
        drop = {"--quiet", "-q", "--disable-pip-version-check", "--no-cache-dir"}
        steps.append([a for a in args if a not in drop])
    return steps


def _makefile_install() -> list[list[str]]:
    text = (REPO / "Makefile").read_text()
    recipe = text.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    return _pip_steps(recipe.splitlines())


def _dockerfile_runs() -> list[str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_dockerfile_installs_what_the_makefile_installs() -> None:
    make = _makefile_install()
    lines = _dockerfile_runs()
    docker = _pip_steps([ln for ln in lines if ln.startswith("RUN")])
    assert lines[0] == "FROM python:3.11-slim"
    assert make[0] == ["torch==2.13.0"], make  # the Makefile's order this test relies on

    def normalise(step: list[str]) -> list[str]:
        out, skip = [], False
        for arg in step:
            if skip:
                skip = False
            elif arg == "--index-url":
                skip = True  # torch's wheel index (CPU by default) is image-specific
            elif arg != "-e":  # editable on a laptop, a plain install in the image
                out.append(arg)
        return out

    assert [normalise(s) for s in docker[: len(make)]] == [normalise(s) for s in make]
    # torch first, from PyTorch's CPU index unless the build overrides it.
    assert docker[0][:2] == ["--index-url", "${TORCH_INDEX_URL}"]
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in lines
    # What follows is only the cluster instance's libraries, pinned to the lock.
    for extra in docker[len(make) :]:
        assert extra[:2] == ["-c", "requirements.lock"]
        assert all("==" in a for a in extra[2:]), extra
        assert {a.split("==")[0].split("[")[0] for a in extra[2:]} <= {
            "dagster-k8s",
            "dagster-postgres",
            "psycopg2-binary",
            "psycopg",
        }
    # Every requirements file is copied in before the step that reads it.
    for step_index, step in enumerate(docker):
        for i, arg in enumerate(step):
            if arg in {"-r", "-c"}:
                wanted = step[i + 1]
                run_at = [j for j, ln in enumerate(lines) if ln.startswith("RUN")][step_index]
                copies = [ln for ln in lines[:run_at] if ln.startswith("COPY")]
                assert any(wanted in ln.split() for ln in copies), (wanted, copies)
    dockerignore = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in dockerignore and "generated_content" in dockerignore
