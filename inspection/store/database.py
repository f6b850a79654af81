"""Opening the database: SQLite (WAL) or PostgreSQL by URL, migrated by Alembic.

Why these SQLite settings: WAL lets readers (the review page, analytics) run while the
service writes; `synchronous=FULL` fsyncs the WAL on every commit, so an acknowledged
verdict survives a power cut, not only a crashed process; `busy_timeout` makes a second
writer wait instead of failing.

Files: a SQLite database and its -wal and -shm files are created 0600 (readable by the
service's user only, like the stored images); SQLite gives -wal and -shm the database file's
mode, so creating qc.db 0600 before the first connection covers all three, and an existing
qc.db that others may read is narrowed to 0600 when opened. Errors never show the URL's
password.

Example::

    db = Database("sqlite:////var/lib/qc/qc.db")
    db.upgrade()                      # Alembic, to the newest schema
    with db.engine.begin() as conn:   # plain SQLAlchemy Core from here
        ...
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine

from inspection.errors import ConfigError
from inspection.settings import Settings

MIGRATIONS = Path(__file__).with_name("migrations")


def normalise_url(url: str) -> str:
    """postgresql:// means psycopg 3 here (SQLAlchemy alone would pick psycopg2)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def without_password(text: str, url: str = "") -> str:
    """`text` with the password of any URL in it (and of `url`, wherever it appears) masked."""
    masked = _PASSWORD.sub(r"\1***@", text)
    found = _PASSWORD.search(url)
    if found:
        secret = found.group(0)[len(found.group(1)):-1]
        if secret:
            masked = masked.replace(secret, "***")
    return masked


def _private_sqlite_file(path: Path) -> None:
    """qc.db created 0600 (its -wal and -shm inherit the mode), or narrowed to 0600."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            info = candidate.stat()
            if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) and info.st_uid == os.getuid():
                candidate.chmod(0o600)
        except FileNotFoundError:
            pass


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = self.url.split("///", 1)[-1].split("?", 1)[0]
            if path and path != ":memory:" and not path.startswith("file:"):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                _private_sqlite_file(Path(path))
        try:
            self.engine: Engine = create_engine(
                self.url,
                echo=echo,
                pool_pre_ping=not self.is_sqlite,
                connect_args={"timeout": 30} if self.is_sqlite else {},
            )
        except Exception as error:  # noqa: BLE001 - bad URL or missing driver: a ConfigError naming the fix
            raise ConfigError(
                f"database URL {without_password(url)!r} cannot be used "
                f"({without_password(str(error), url)}); use sqlite:///path/qc.db or "
                "postgresql://user:password@host:5432/db"
            ) from None  # the chained error's traceback would print the URL again
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)

    @classmethod
    def from_settings(cls, settings: Settings, *, upgrade: bool = True) -> Database:
        db = cls(settings.db_url)
        if upgrade:
            db.upgrade()
        return db

    def _alembic_config(self):
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["engine"] = self.engine
        return config

    def upgrade(self, revision: str = "head") -> None:
        from alembic import command
        from sqlalchemy.exc import OperationalError

        try:
            command.upgrade(self._alembic_config(), revision)
        except OperationalError as error:  # the first connection: server down, wrong password
            reason = without_password(str(error.orig or error).strip().splitlines()[0][:200], self.url)
            raise ConfigError(
                f"database {self.engine.url.render_as_string(hide_password=True)}: cannot connect "
                f"({reason}); check QC_DATABASE_URL and that the server is up"
            ) from error

    def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def tables(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure to answer is "unreachable" on /readyz
            return False

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
