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
_SCHEME = re.compile(r"^[A-Za-z][\w+.-]*:?/+")  # "postgresql://", and the typos "postgres//", "postgresql:/"


def url_secret(url: str) -> str:
    """The password in `url`, found without parsing it (a URL too broken to parse still has
    one): what lies between the user's ":" and the last "@" (a password may hold "@")."""
    if "@" not in url:
        return ""
    userinfo = _SCHEME.sub("", url.rsplit("@", 1)[0], count=1)
    return userinfo.split(":", 1)[1] if ":" in userinfo else ""


def without_password(text: str, url: str = "") -> str:
    """`text` with the password of any URL in it (and of `url`, wherever it appears, whole or
    in the pieces a parser may have cut it into at an "@") masked."""
    secret = url_secret(url)
    pieces = [secret, *(p for p in secret.split("@") if len(p) >= 3)] if secret else []
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "***")
    return _PASSWORD.sub(r"\1***@", text)


def _check_url(url: str) -> None:
    """Refuse what cannot work before any parser sees it (and prints it), in one line."""
    if not url.startswith(("sqlite:", "sqlite+", "postgresql://", "postgresql+", "postgres://")):
        raise ConfigError(f"database URL {without_password(url, url)!r} cannot be used: no known scheme; "
                          "set QC_DATABASE_URL to sqlite:///path/qc.db or postgresql://user:password@host:5432/db")
    if url_secret(url).count("@"):
        raise ConfigError(f"database URL {without_password(url, url)!r} cannot be used: its password holds '@', "
                          "which must be written %40 in QC_DATABASE_URL")


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
        _check_url(url)
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
                f"database URL {without_password(url, url)!r} cannot be used "
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
        from sqlalchemy.exc import DBAPIError

        try:
            command.upgrade(self._alembic_config(), revision)
        except DBAPIError as error:  # the first connection: server down, wrong password, a bad option
            reason = without_password(str(error.orig or error).strip().splitlines()[0][:200], self.url)
            raise ConfigError(
                f"database {self.engine.url.render_as_string(hide_password=True)}: cannot connect "
                f"({reason}); check QC_DATABASE_URL and that the server is up"
            ) from None  # the chained error's traceback would print the URL again

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
