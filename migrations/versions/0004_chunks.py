"""chunk index and segments that reference part of an object

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('object_offset', sa.BigInteger(), nullable=False, server_default='0'))
    op.create_table('chunks',
    sa.Column('object_id', sa.Integer(), nullable=False),
    sa.Column('raw_offset', sa.BigInteger(), nullable=False),
    sa.Column('length', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['object_id'], ['objects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('object_id', 'raw_offset')
    )
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chunks_hash'), ['hash'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chunks_hash'))
    op.drop_table('chunks')
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.drop_column('object_offset')
