"""The portal's one adapter to the Dagster asset catalog.

Reads the latest materialization metadata of the user's partition through a
:class:`dagster.DagsterInstance` (``fetch_materializations`` with an ``AssetRecordsFilter`` on
the user's partition; no deprecated event-log APIs) and returns plain dicts keyed by the
``request_id`` each materialization carries in its metadata, e.g.::

    {"3f0c…": {"script": {"script": "Hello there.", "segment_count": 1, ...},
               "stitched_mp4": {"duration_s": 1.42, "file": "/…/talking_head.mp4", ...},
               "hls": {"playlist": "/…/hls/index.m3u8", ...}}}

Reads are cached with ``st.cache_data`` (TTL :data:`CACHE_TTL_S`, at most
:data:`CACHE_MAX_ENTRIES` entries). The cache key holds the request ids asked for, so a request
that has just completed is read afresh rather than waiting out the TTL.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import streamlit as st

from avgen_dagster.settings import get_settings

# Assets whose metadata the gallery shows; the visual and music package (issue 5) is read too
# when its assets exist. Asset keys are single-part names.
CATALOG_ASSETS: tuple[str, ...] = (
    "script",
    "stitched_mp4",
    "hls",
    "images",
    "music",
    "video_clips",
    "music_video",
    "final_video",
)
CACHE_TTL_S = 60
CACHE_MAX_ENTRIES = 512
RECORDS_PER_REQUEST = 3  # materializations read per asked-for request (re-runs add more)


@st.cache_resource(max_entries=8, show_spinner=False)
def _instance(dagster_home: str) -> dg.DagsterInstance:
    """The Dagster instance at ``dagster_home`` (one per process and home folder)."""
    if os.environ.get("DAGSTER_HOME") != dagster_home:
        Path(dagster_home).mkdir(parents=True, exist_ok=True)
        os.environ["DAGSTER_HOME"] = dagster_home
    return dg.DagsterInstance.get()


def get_instance() -> dg.DagsterInstance:
    """The Dagster instance at ``DAGSTER_HOME`` (settings default when unset), cached."""
    return _instance(str(get_settings().dagster_home_path))


def plain_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Dagster ``MetadataValue`` objects → plain Python values (str, float, int, dict, list).

    Markdown and path values become ``str``; JSON values their dict/list; floats ``float``.
    """
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        out[key] = value.value if isinstance(value, dg.MetadataValue) else value
    return out


def read_catalog(
    instance: dg.DagsterInstance,
    user_id: str,
    request_ids: Iterable[str],
    assets: Sequence[str] = CATALOG_ASSETS,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Latest metadata per asked-for request and asset, from the user's partition.

    Args:
        instance: the Dagster instance to read.
        user_id: the partition key; only this partition is read.
        request_ids: the requests of interest; materializations of other requests are ignored.
        assets: asset names to read.

    Returns:
        ``{request_id: {asset_name: {metadata key: plain value}}}``; a request or asset with no
        materialization is absent. Newest materialization wins when a request has several.
    """
    wanted = set(request_ids)
    result: dict[str, dict[str, dict[str, Any]]] = {}
    if not wanted:
        return result
    limit = RECORDS_PER_REQUEST * len(wanted)
    for name in assets:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), asset_partitions=[user_id]),
            limit=limit,
        ).records  # newest first
        for record in records:
            materialization = record.asset_materialization
            if materialization is None:
                continue
            meta = plain_metadata(dict(materialization.metadata))
            request_id = meta.get("request_id")
            if request_id in wanted:
                result.setdefault(str(request_id), {}).setdefault(name, meta)
    return result


@st.cache_data(ttl=CACHE_TTL_S, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def _cached_catalog(
    dagster_home: str, user_id: str, request_ids: tuple[str, ...]
) -> dict[str, dict[str, dict[str, Any]]]:
    return read_catalog(_instance(dagster_home), user_id, request_ids)


def request_catalog(
    user_id: str, request_ids: Sequence[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Cached :func:`read_catalog` for ``user_id``'s ``request_ids`` on the settings' instance.

    Only the signed-in user's id is ever passed here by the portal; the result holds nothing of
    another partition.
    """
    home = str(get_settings().dagster_home_path)
    return _cached_catalog(home, user_id, tuple(sorted(set(request_ids))))


def clear_cache() -> None:
    """Forget cached catalog reads (tests; after a run completes in-process)."""
    _cached_catalog.clear()
