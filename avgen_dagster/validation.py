"""Validation of user-supplied identifiers (pure; used by the CLI, the assets and the store)."""

from __future__ import annotations

import re

from avgen_dagster.errors import InvalidInputError

USER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
USER_ID_MAX_CHARS = 64
REQUEST_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def validate_user_id(user_id: str) -> str:
    """Return ``user_id`` if it is 1–64 characters of ``[A-Za-z0-9_-]``.

    The user id names a Dagster partition and a folder under the content root, so anything
    that could escape that folder (``/``, ``..``, NUL) is refused.

    Raises:
        InvalidInputError: naming what is wrong (empty, too long, or the bad characters).
    """
    if not isinstance(user_id, str) or not user_id:
        raise InvalidInputError("user id is empty; use 1-64 characters of A-Z, a-z, 0-9, _ or -")
    if len(user_id) > USER_ID_MAX_CHARS:
        raise InvalidInputError(
            f"user id is {len(user_id)} characters; the limit is {USER_ID_MAX_CHARS}"
        )
    if not USER_ID_PATTERN.match(user_id):
        bad = sorted({c for c in user_id if not re.match(r"[A-Za-z0-9_-]", c)})
        raise InvalidInputError(
            f"user id {user_id!r} has characters that are not allowed: {''.join(bad)!r}; "
            "use only A-Z, a-z, 0-9, _ or -"
        )
    return user_id


def validate_request_id(request_id: str) -> str:
    """Return ``request_id`` if it is a 32-character lowercase hex UUID.

    Raises:
        InvalidInputError: if it is not.
    """
    if not isinstance(request_id, str) or not REQUEST_ID_PATTERN.match(request_id):
        raise InvalidInputError(f"request id {request_id!r} is not a 32-character hex id")
    return request_id


# Bidirectional-text controls (Unicode UAX #9): LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI, and
# the LRM/RLM/ALM marks. In a prompt they only serve to make shown text differ from stored text.
_BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
_KEPT_CONTROLS = frozenset("\n\t")


def strip_control_characters(text: str) -> str:
    """``text`` without control characters: C0/C1 controls (Unicode category Cc: NUL, BEL,
    ESC…) and bidirectional controls are removed; newlines and tabs are kept (``\\r\\n`` and
    ``\\r`` become ``\\n``).

    So a prompt like ``"hi\\x07\\x1b[2J"`` is stored and shown as ``"hi[2J"``, never rings a
    terminal's bell, clears a screen or reverses the text around it.
    """
    import unicodedata

    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(
        c
        for c in text
        if c in _KEPT_CONTROLS or (c not in _BIDI_CONTROLS and unicodedata.category(c) != "Cc")
    )
