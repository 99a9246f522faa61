"""Links the API hands out: a request's outputs as signed, expiring media URLs.

No FastAPI import: the webhook payload (built in a Dagster run) uses the same function as the
``GET /v1/requests/{id}`` handler, so both name each deliverable the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from avgen_dagster.media_server import MEDIA_URL_MAX_AGE_S, media_url
from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.store.content import ContentTree
from avgen_dagster.store.models import utcnow

OutputLinks = dict[str, Any]


def request_path(request_id: str) -> str:
    """The API path of one request, ``/v1/requests/<id>`` (its ``Location``)."""
    return f"/v1/requests/{request_id}"


def signed_outputs(
    tree: ContentTree,
    user_id: str,
    request_id: str,
    outputs: RequestOutputs,
    *,
    media_base_url: str,
    secret: str,
) -> tuple[OutputLinks, datetime]:
    """Every deliverable of ``outputs`` as a signed media URL, keyed like the outputs record
    (a URL or None per file; a list of URLs per list), and when the URLs expire (aware UTC;
    :data:`~avgen_dagster.media_server.MEDIA_URL_MAX_AGE_S` after signing).

    A recorded path that is not a file inside the request's own folder (a row pointing at
    another request, or a file since removed) is left out (None), never signed.
    """
    signed_at = utcnow()  # before signing: the stated expiry is never later than the real one

    def link(uri: str | None) -> str | None:
        rel = tree.relative_in_request(user_id, request_id, uri)
        if rel is None:
            return None
        return media_url(media_base_url, user_id, request_id, rel, secret)

    links: OutputLinks = {}
    for name, value in outputs.model_dump().items():
        if isinstance(value, list):
            links[name] = [url for url in (link(v) for v in value) if url]
        else:
            links[name] = link(value)
    return links, signed_at + timedelta(seconds=MEDIA_URL_MAX_AGE_S)
