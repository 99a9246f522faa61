"""Alembic environment for avgen's app database (online mode only; URL from the config)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from avgen_dagster.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Run migrations against the configured URL; batch mode so SQLite can alter tables."""
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Processes starting together migrate one at a time (held to the commit; the
                # next one then finds the schema current). SQLite: a file lock in session.py.
                connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('avgen-migrate'))"))
            context.run_migrations()
    engine.dispose()


run_migrations_online()
