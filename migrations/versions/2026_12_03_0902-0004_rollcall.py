"""roll-call rounds, records and confirmation keys

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:02:48.493817
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rollcall_confirmations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "session_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("point_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("round_number", sa.Integer(), nullable=False),
        sa.Column("headcount", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["point_id"],
            ["points.id"],
            name=op.f("fk_rollcall_confirmations_point_id_points"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["conference_sessions.id"],
            name=op.f("fk_rollcall_confirmations_session_id_conference_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollcall_confirmations")),
        sa.UniqueConstraint(
            "session_id",
            "point_id",
            "key",
            name=op.f("uq_rollcall_confirmations_session_id_point_id_key"),
        ),
    )
    op.create_table(
        "rollcall_rounds",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "session_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.String(length=300), nullable=False),
        sa.Column("opened_by", sa.String(length=100), nullable=False),
        sa.Column("closed_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["conference_sessions.id"],
            name=op.f("fk_rollcall_rounds_session_id_conference_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollcall_rounds")),
        sa.UniqueConstraint(
            "session_id", "number", name=op.f("uq_rollcall_rounds_session_id_number")
        ),
    )
    op.create_table(
        "rollcall_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("round_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("point_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("headcount_limit", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("headcount", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("changed_by_staff", sa.Boolean(), nullable=False),
        sa.Column("changed_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["point_id"],
            ["points.id"],
            name=op.f("fk_rollcall_records_point_id_points"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["rollcall_rounds.id"],
            name=op.f("fk_rollcall_records_round_id_rollcall_rounds"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollcall_records")),
        sa.UniqueConstraint(
            "round_id", "point_id", name=op.f("uq_rollcall_records_round_id_point_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("rollcall_records")
    op.drop_table("rollcall_rounds")
    op.drop_table("rollcall_confirmations")
