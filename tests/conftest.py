"""Shared fixtures: an isolated avgen environment (DAGSTER_HOME, content root, app DB) per test."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_PORTRAIT = REPO / "samples" / "portrait.png"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@dataclass
class AvgenEnv:
    """Paths of an isolated avgen environment."""

    home: Path
    content: Path
    db_url: str


@pytest.fixture
def avgen_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AvgenEnv:
    """Point DAGSTER_HOME, AVGEN_CONTENT_DIR and AVGEN_DATABASE_URL at a temp folder."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    content = tmp_path / "content"
    db_url = f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("AVGEN_CONTENT_DIR", str(content))
    monkeypatch.setenv("AVGEN_DATABASE_URL", db_url)
    return AvgenEnv(home=home, content=content, db_url=db_url)


@pytest.fixture(scope="session")
def tiny_xtts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight XTTS-v2 model folder built here once per session
    (:func:`avgen_dagster.devtools.tiny_models.build_tiny_xtts`; ~4 s)."""
    from avgen_dagster.devtools.tiny_models import build_tiny_xtts

    return build_tiny_xtts(tmp_path_factory.mktemp("tiny_xtts"))
