"""Alembic migrations; `migrations.runner` drives them without an alembic.ini on disk."""
