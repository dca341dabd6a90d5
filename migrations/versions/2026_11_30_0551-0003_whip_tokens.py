"""whip tokens

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 05:51:42.598528
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "whip_tokens",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "session_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["conference_sessions.id"],
            name=op.f("fk_whip_tokens_session_id_conference_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_whip_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_whip_tokens_token_hash")),
    )
    with op.batch_alter_table("whip_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_whip_tokens_session_id"), ["session_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("whip_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_whip_tokens_session_id"))

    op.drop_table("whip_tokens")
