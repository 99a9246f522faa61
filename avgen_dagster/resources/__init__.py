"""Dagster resources: backends, media-chain settings, the content store, the app database."""

from avgen_dagster.resources.backends import (
    LipsyncBackendResource,
    MediaChainResource,
    SpeechBackendResource,
    TextBackendResource,
)
from avgen_dagster.resources.storage import AppDatabaseResource, ContentStore

__all__ = [
    "AppDatabaseResource",
    "ContentStore",
    "LipsyncBackendResource",
    "MediaChainResource",
    "SpeechBackendResource",
    "TextBackendResource",
]
