"""account_balance: each account's ledger summed, kept by triggers in every entry's own
transaction; ledger entries insert-only in the database itself; ledger_entry indexed by
(account_id, created_at) instead of account_id alone

The balances are computed from the ledger as it stands, so no balance changes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 09:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

EMERGENCY = "emergency_credit"

SQLITE_TRIGGERS = [
    """CREATE TRIGGER account_balance_open AFTER INSERT ON account
       BEGIN
         INSERT INTO account_balance (account_id, balance_fen, advance_fen, entry_count)
         VALUES (NEW.id, 0, 0, 0);
       END""",
    f"""CREATE TRIGGER ledger_entry_post AFTER INSERT ON ledger_entry
       BEGIN
         UPDATE account_balance
            SET balance_fen = balance_fen + NEW.amount_fen,
                advance_fen = advance_fen
                              + CASE WHEN NEW.kind = '{EMERGENCY}' THEN NEW.amount_fen ELSE 0 END,
                entry_count = entry_count + 1
          WHERE account_id = NEW.account_id;
         SELECT RAISE(ABORT, 'ledger entry for an account without an account_balance row')
          WHERE changes() = 0;
       END""",
    """CREATE TRIGGER ledger_entry_no_update BEFORE UPDATE ON ledger_entry
       BEGIN SELECT RAISE(ABORT, 'ledger entries are insert-only'); END""",
    """CREATE TRIGGER ledger_entry_no_delete BEFORE DELETE ON ledger_entry
       BEGIN SELECT RAISE(ABORT, 'ledger entries are insert-only'); END""",
]

POSTGRES_TRIGGERS = [
    """CREATE FUNCTION account_balance_open() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         INSERT INTO account_balance (account_id, balance_fen, advance_fen, entry_count)
         VALUES (NEW.id, 0, 0, 0);
         RETURN NULL;
       END $$""",
    """CREATE TRIGGER account_balance_open AFTER INSERT ON account
       FOR EACH ROW EXECUTE FUNCTION account_balance_open()""",
    f"""CREATE FUNCTION ledger_entry_post() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         UPDATE account_balance
            SET balance_fen = balance_fen + NEW.amount_fen,
                advance_fen = advance_fen
                              + CASE WHEN NEW.kind = '{EMERGENCY}' THEN NEW.amount_fen ELSE 0 END,
                entry_count = entry_count + 1
          WHERE account_id = NEW.account_id;
         IF NOT FOUND THEN
           RAISE EXCEPTION 'ledger entry for account % without an account_balance row',
             NEW.account_id;
         END IF;
         RETURN NULL;
       END $$""",
    """CREATE TRIGGER ledger_entry_post AFTER INSERT ON ledger_entry
       FOR EACH ROW EXECUTE FUNCTION ledger_entry_post()""",
    """CREATE FUNCTION ledger_entry_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'ledger entries are insert-only';
       END $$""",
    """CREATE TRIGGER ledger_entry_insert_only BEFORE UPDATE OR DELETE ON ledger_entry
       FOR EACH ROW EXECUTE FUNCTION ledger_entry_insert_only()""",
]


def upgrade() -> None:
    op.create_table(
        'account_balance',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('balance_fen', sa.BigInteger(), nullable=False),
        sa.Column('advance_fen', sa.BigInteger(), nullable=False),
        sa.Column('entry_count', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['account.id']),
        sa.PrimaryKeyConstraint('account_id'),
    )
    op.execute(f"""
        INSERT INTO account_balance (account_id, balance_fen, advance_fen, entry_count)
        SELECT a.id,
               COALESCE(SUM(e.amount_fen), 0),
               COALESCE(SUM(CASE WHEN e.kind = '{EMERGENCY}' THEN e.amount_fen ELSE 0 END), 0),
               COUNT(e.id)
          FROM account a LEFT JOIN ledger_entry e ON e.account_id = a.id
         GROUP BY a.id""")
    op.create_index('ix_ledger_entry_account_id_created_at', 'ledger_entry',
                    ['account_id', 'created_at'])
    op.drop_index('ix_ledger_entry_account_id', table_name='ledger_entry')
    dialect = op.get_bind().dialect.name
    for statement in (POSTGRES_TRIGGERS if dialect == 'postgresql' else SQLITE_TRIGGERS):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        for name, table in (('ledger_entry_insert_only', 'ledger_entry'),
                            ('ledger_entry_post', 'ledger_entry'),
                            ('account_balance_open', 'account')):
            op.execute(f"DROP TRIGGER {name} ON {table}")
            op.execute(f"DROP FUNCTION {name}()")
    else:
        for name in ('ledger_entry_no_delete', 'ledger_entry_no_update', 'ledger_entry_post',
                     'account_balance_open'):
            op.execute(f"DROP TRIGGER {name}")
    op.create_index('ix_ledger_entry_account_id', 'ledger_entry', ['account_id'])
    op.drop_index('ix_ledger_entry_account_id_created_at', table_name='ledger_entry')
    op.drop_table('account_balance')
