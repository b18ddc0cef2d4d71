"""Alembic environment: the URL comes from the caller's Config (see app/cli.py: db upgrade)."""

from alembic import context

import app.models  # noqa: F401  (registers every table)
from app.db import make_engine
from sqlmodel import SQLModel

config = context.config
url = config.get_main_option("sqlalchemy.url")
engine = make_engine(url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
