"""Staff accounts and their sign-in sessions. Passwords are hashed with argon2id; sessions are
stored rows whose id is the sha256 of the cookie's random token.

Example::

    users = UserStore(db)
    users.add("kim", password="correct horse battery", role="reviewer", display_name="Kim Jiwoo")
    user = users.authenticate("kim", "correct horse battery")   # User; LoginRefused otherwise
    token, session = users.open_session(user, idle=timedelta(hours=2), lifetime=timedelta(hours=12))
    users.session(token).user.name                               # "kim", until sign-out or expiry

Why argon2id (argon2-cffi) here and sha256 for API keys (inspection/store/keys.py): a person
chooses a password, which can be guessed, so its hash must be slow; a key's secret is 32
random bytes. Login throttling is kept in the row (`failed_logins`, `locked_until`), so it
holds across workers and restarts: after `FREE_FAILURES` wrong passwords a name is locked for
`LOCK_BASE`, doubling with each further failure up to `LOCK_MAX`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from inspection.errors import ConfigError, Conflict, NotFound, QCError
from inspection.roles import Role
from inspection.store.database import Database
from inspection.store.records import utcnow
from inspection.store.schema import sessions, users

USER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD = 10
FREE_FAILURES = 5
LOCK_BASE = timedelta(seconds=30)
LOCK_MAX = timedelta(minutes=15)

_hasher = PasswordHasher()  # argon2id with the library's current RFC 9106 low-memory profile
# Compared against when the name does not exist, so that a wrong name costs as long as a
# wrong password and the timing does not tell which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class LoginRefused(QCError):
    """Wrong name or password, a disabled account, or a name locked after repeated failures.
    `retry_after` is the seconds until a locked name may try again (0 when not locked)."""

    def __init__(self, message: str, *, retry_after: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class User:
    name: str
    display_name: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str  # sent back by the page in X-CSRF-Token (fetch) or a `csrf` field (forms)
    expires_at: datetime


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"a password needs at least {MIN_PASSWORD} characters")


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- accounts --------------------------------------------------------------------------

    def add(self, name: str, *, password: str, role: Role | str = Role.REVIEWER,
            display_name: str = "") -> User:
        role = Role.parse(role)
        if not role.is_staff:
            raise ConfigError("people are reviewer, engineer or admin; stations use API keys (qc keys create)")
        if not USER_NAME.fullmatch(name):
            raise ConfigError(f"user name {name!r}: use lower-case letters, digits, '.', '_' and '-' "
                              "(up to 64, starting with a letter or digit), e.g. kim.jiwoo")
        check_password(password)
        try:
            with self.db.engine.begin() as conn:
                conn.execute(users.insert().values(
                    name=name, display_name=display_name.strip() or name, role=role.value,
                    password_hash=_hasher.hash(password), created_at=utcnow(), failed_logins=0))
        except IntegrityError as error:
            raise Conflict(f"user {name} already exists; change the password with qc users passwd {name}") from error
        return self.get(name)

    def get(self, name: str) -> User:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"user {name} does not exist; see qc users list")
        return _user(row)

    def list(self) -> list[User]:
        with self.db.engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(users).order_by(users.c.name)).mappings()]

    def disable(self, name: str) -> None:
        """The account can no longer sign in, and its open sessions end now."""
        with self.db.engine.begin() as conn:
            done = conn.execute(update(users).where(users.c.name == name).values(disabled_at=utcnow()))
            if not done.rowcount:
                raise NotFound(f"user {name} does not exist; see qc users list")
            conn.execute(delete(sessions).where(sessions.c.user_name == name))

    def set_password(self, name: str, password: str) -> None:
        """A new password; also lifts a lock, re-enables the account and ends its sessions."""
        check_password(password)
        with self.db.engine.begin() as conn:
            done = conn.execute(update(users).where(users.c.name == name).values(
                password_hash=_hasher.hash(password), failed_logins=0, locked_until=None, disabled_at=None))
            if not done.rowcount:
                raise NotFound(f"user {name} does not exist; add it with qc users add {name}")
            conn.execute(delete(sessions).where(sessions.c.user_name == name))

    def authenticate(self, name: str, password: str) -> User:
        """The user, or LoginRefused (one message for a wrong name or password)."""
        wrong = LoginRefused("wrong user name or password")
        with self.db.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name.strip().lower())).mappings().first()
        if row is None:
            _verify(_DUMMY_HASH, password)
            raise wrong
        now = utcnow()
        if row["locked_until"] is not None and row["locked_until"] > now:
            wait = int((row["locked_until"] - now).total_seconds()) + 1
            raise LoginRefused(f"too many failed sign-ins; try again in {wait} s", retry_after=wait)
        if not _verify(row["password_hash"], password):
            failures = row["failed_logins"] + 1
            lock = None
            if failures >= FREE_FAILURES:
                lock = now + min(LOCK_BASE * 2 ** (failures - FREE_FAILURES), LOCK_MAX)
            with self.db.engine.begin() as conn:
                conn.execute(update(users).where(users.c.name == row["name"]).values(
                    failed_logins=users.c.failed_logins + 1, locked_until=lock))
            if lock is not None:
                wait = int((lock - now).total_seconds())
                raise LoginRefused(f"too many failed sign-ins; try again in {wait} s", retry_after=wait)
            raise wrong
        if row["disabled_at"] is not None:
            raise LoginRefused("this account is disabled; ask an admin (qc users passwd re-enables it)")
        values: dict = {"failed_logins": 0, "locked_until": None}
        if _hasher.check_needs_rehash(row["password_hash"]):
            values["password_hash"] = _hasher.hash(password)
        with self.db.engine.begin() as conn:
            conn.execute(update(users).where(users.c.name == row["name"]).values(**values))
        return _user(row)

    # -- sessions --------------------------------------------------------------------------

    def open_session(self, user: User, *, idle: timedelta, lifetime: timedelta) -> tuple[str, Session]:
        """A new session: (the cookie's token, shown once, and the session). It ends after
        `idle` without a request, or `lifetime` after sign-in, whichever comes first."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        csrf = secrets.token_urlsafe(32)
        expires = now + lifetime
        with self.db.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.expires_at < now))  # tidy as we go
            conn.execute(sessions.insert().values(id=_token_id(token), user_name=user.name, csrf=csrf,
                                                  created_at=now, last_seen=now, expires_at=expires))
        return token, Session(user=user, csrf=csrf, expires_at=min(expires, now + idle))

    def session(self, token: str, *, idle: timedelta) -> Session | None:
        """The live session of `token` (its idle clock restarted), or None: unknown, signed
        out, expired, idle too long, or its user disabled."""
        now = utcnow()
        query = (select(sessions.c.id, sessions.c.csrf, sessions.c.last_seen, sessions.c.expires_at,
                        users.c.name, users.c.display_name, users.c.role, users.c.created_at,
                        users.c.disabled_at)
                 .join(users, users.c.name == sessions.c.user_name)
                 .where(sessions.c.id == _token_id(token)))
        with self.db.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None or row["disabled_at"] is not None:
            return None
        if row["expires_at"] <= now or row["last_seen"] + idle <= now:
            self.close_session(token)
            return None
        if now - row["last_seen"] > timedelta(seconds=30):  # one write per half minute, not per request
            with self.db.engine.begin() as conn:
                conn.execute(update(sessions).where(sessions.c.id == row["id"]).values(last_seen=now))
        return Session(user=_user(row), csrf=row["csrf"], expires_at=min(row["expires_at"], now + idle))

    def close_session(self, token: str) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.id == _token_id(token)))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _user(row) -> User:
    return User(name=row["name"], display_name=row["display_name"], role=Role(row["role"]),
                created_at=row["created_at"], disabled_at=row["disabled_at"])
