"""Dagster resources: backends, media-chain settings, the content store, the app database."""

from avgen_dagster.resources.backends import (
    LipsyncBackendResource,
    MediaChainResource,
    SpeechBackendResource,
    TextBackendResource,
)
from avgen_dagster.resources.storage import AppDatabaseResource, ContentStore
from avgen_dagster.resources.visuals import (
    ImageBackendResource,
    MusicBackendResource,
    VideoBackendResource,
)

__all__ = [
    "AppDatabaseResource",
    "ContentStore",
    "ImageBackendResource",
    "LipsyncBackendResource",
    "MediaChainResource",
    "MusicBackendResource",
    "SpeechBackendResource",
    "TextBackendResource",
    "VideoBackendResource",
]
