"""tensor fingerprints and their band index on objects

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BANDS = ('fp_band0', 'fp_band1', 'fp_band2', 'fp_band3')


def upgrade() -> None:
    # Objects stored before this have no fingerprint: they are found by name as before
    # (`weightvault db fingerprint` fills theirs in).
    with op.batch_alter_table('objects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fingerprint', sa.LargeBinary(), nullable=True))
        for band in BANDS:
            batch_op.add_column(sa.Column(band, sa.BigInteger(), nullable=True))
            batch_op.create_index(batch_op.f(f'ix_objects_{band}'), [band], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('objects', schema=None) as batch_op:
        for band in BANDS:
            batch_op.drop_index(batch_op.f(f'ix_objects_{band}'))
            batch_op.drop_column(band)
        batch_op.drop_column('fingerprint')
