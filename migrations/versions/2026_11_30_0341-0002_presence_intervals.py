"""presence intervals

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 03:41:15.407660
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "presence_intervals",
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
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_reason", sa.String(length=32), nullable=True),
        sa.Column("client", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["point_id"],
            ["points.id"],
            name=op.f("fk_presence_intervals_point_id_points"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["conference_sessions.id"],
            name=op.f("fk_presence_intervals_session_id_conference_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_presence_intervals")),
    )
    with op.batch_alter_table("presence_intervals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_presence_intervals_session_id"),
            ["session_id", "point_id", "connected_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("presence_intervals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_presence_intervals_session_id"))

    op.drop_table("presence_intervals")
