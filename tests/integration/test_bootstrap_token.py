"""The bootstrap admin token is created once per database, however many processes start
against it at once; only its creator writes the token file; nobody revokes it. SQLite,
PostgreSQL and MariaDB (skipped when unreachable, except under CI=true)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from allotment import cli
from allotment.auth.tokens import BOOTSTRAP_NAME, Bootstrap, TokenStore
from allotment.db import migrate
from allotment.db.database import Database

pytestmark = [pytest.mark.integration]


def test_starts_at_once_create_one_token_and_one_file(database_url: str, tmp_path: Path) -> None:
    schema = Database(database_url)
    migrate.prepare(schema)
    schema.dispose()
    starts = 6
    barrier = threading.Barrier(starts)
    found: dict[int, Bootstrap] = {}
    failures: list[BaseException] = []

    def start(index: int) -> None:
        # One engine each, as separate processes have.
        db = Database(database_url)
        try:
            store = TokenStore(db)
            barrier.wait()
            found[index] = store.ensure_bootstrap(tmp_path / f"state{index}")
        except BaseException as exc:
            failures.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=start, args=(i,)) for i in range(starts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    creators = [i for i, b in found.items() if b.created]
    assert len(creators) == 1, found
    files = sorted(tmp_path.glob("state*/admin-token"))
    assert files == [tmp_path / f"state{creators[0]}" / "admin-token"]
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"
    for index, bootstrap in found.items():
        if index != creators[0]:
            assert not bootstrap.ours
            assert bootstrap.describe().startswith(
                "bootstrap admin token exists in the database (created by another process); "
                "not writing "
            )
    db = Database(database_url)
    store = TokenStore(db)
    assert [t.name for t in store.list()] == [BOOTSTRAP_NAME]
    record = store.lookup(files[0].read_text().strip())
    assert record is not None and record.roles == {"admin"}
    db.dispose()


def test_a_restart_keeps_its_token_and_a_revoked_one_is_made_again(
    database_url: str, tmp_path: Path
) -> None:
    db = Database(database_url)
    migrate.prepare(db)
    store = TokenStore(db)
    first = store.ensure_bootstrap(tmp_path / "a")
    token = first.path.read_text()
    assert first.created
    again = store.ensure_bootstrap(tmp_path / "a")
    assert again.ours and not again.created
    assert again.describe() == f"bootstrap admin token kept: {first.path.resolve()} (mode 0600)"
    assert first.path.read_text() == token
    # A file another database's token left in a state dir is not used, and not touched.
    stale = tmp_path / "b" / "admin-token"
    stale.parent.mkdir()
    stale.write_text("not-a-token-of-this-database\n")
    other = store.ensure_bootstrap(tmp_path / "b")
    assert not other.ours and other.stale_file
    assert stale.read_text() == "not-a-token-of-this-database\n"
    assert store.lookup(token.strip()) is not None
    # Revoked: the next start creates a new token and replaces the stale file with it.
    assert store.revoke(BOOTSTRAP_NAME) == 1
    made = store.ensure_bootstrap(tmp_path / "b")
    assert made.created and made.ours
    assert store.lookup(stale.read_text().strip()) is not None
    assert store.lookup(token.strip()) is None
    db.dispose()


def test_the_bootstrap_name_is_reserved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    code = cli.main(["token", "create", BOOTSTRAP_NAME, "--role", "admin", "--database-url", url])
    assert code == 2
    assert f"the name {BOOTSTRAP_NAME} is kept" in capsys.readouterr().err
    db = Database(url)
    assert TokenStore(db).list() == []
    db.dispose()
