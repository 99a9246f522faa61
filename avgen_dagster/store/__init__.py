"""The app database: SQLAlchemy 2 models, sessions, Alembic migrations and request queries."""

from avgen_dagster.store.models import Base, GenerationRequest, RequestStatus, User
from avgen_dagster.store.session import AppDatabase, upgrade_database

__all__ = [
    "AppDatabase",
    "Base",
    "GenerationRequest",
    "RequestStatus",
    "User",
    "upgrade_database",
]
