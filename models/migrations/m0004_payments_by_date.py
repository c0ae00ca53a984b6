"""An index for the payments of an account by the bank's payment date: the day and week
summaries and the date filters of GET /payments read a range of it."""

from playhouse.migrate import SchemaMigrator, migrate

VERSION = 4


def up(database):
    migrator = SchemaMigrator.from_database(database)
    migrate(migrator.add_index("payment", ("account_id", "payment_date"), False))
