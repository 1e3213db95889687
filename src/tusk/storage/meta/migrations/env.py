"""Alembic environment: Tusk always hands in an open connection (no ini file, no URL here)."""

from alembic import context

from tusk.storage.meta.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
