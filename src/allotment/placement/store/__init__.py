"""The SQL store: tables, migrations and transactional reads/writes (the truth)."""
