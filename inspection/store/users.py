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
random bytes. Login throttling is kept in the database (`login_attempts`, one row per typed
name, existing or not, so a lock tells nothing about which names exist), so it holds across
workers and restarts: after `FREE_FAILURES` wrong passwords a name is locked for `LOCK_BASE`,
doubling with each further failure up to `LOCK_MAX`. Each attempt is counted before its
password is checked, so a burst of parallel guesses gets no more checks than one at a time.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from inspection.errors import ConfigError, Conflict, NotFound, QCError
from inspection.roles import Role
from inspection.store.database import Database
from inspection.store.records import utcnow
from inspection.store.schema import login_attempts, sessions, users

USER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD = 10
FREE_FAILURES = 5
LOCK_BASE = timedelta(seconds=30)
LOCK_MAX = timedelta(minutes=15)
_FORGET_AFTER = timedelta(days=1)  # attempts on a name untried this long are forgotten

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
            conn.execute(delete(login_attempts).where(login_attempts.c.name == name))
            conn.execute(delete(sessions).where(sessions.c.user_name == name))

    def authenticate(self, name: str, password: str) -> User:
        """The user, or LoginRefused (one message for a wrong name or password; a name that
        does not exist is counted and locked like one that does)."""
        wrong = LoginRefused("wrong user name or password")
        typed = name.strip().lower()[:64]
        _, lock = self._count_attempt(typed)  # before the (slow) check: parallel guesses queue here
        with self.db.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == typed)).mappings().first()
        if not _verify(row["password_hash"] if row else _DUMMY_HASH, password) or row is None:
            if lock is not None:
                wait = max(1, int((lock - utcnow()).total_seconds()))
                raise LoginRefused(f"too many failed sign-ins; try again in {wait} s", retry_after=wait)
            raise wrong
        if row["disabled_at"] is not None:
            raise LoginRefused("this account is disabled; ask an admin (qc users passwd re-enables it)")
        with self.db.engine.begin() as conn:
            conn.execute(delete(login_attempts).where(login_attempts.c.name == typed))
            if _hasher.check_needs_rehash(row["password_hash"]):
                conn.execute(update(users).where(users.c.name == typed).values(password_hash=_hasher.hash(password)))
        return _user(row)

    def _count_attempt(self, typed: str) -> tuple[int, datetime | None]:
        """Count one attempt on `typed`, atomically: (its number since the last success, the
        lock it set). LoginRefused while the name is locked. From the `FREE_FAILURES`th on,
        the attempt locks the name before its password is checked (a success lifts it), so
        the attempts after it wait for the lock, however many arrive at once."""
        for _ in range(3):  # a first attempt on a name may race another's insert
            now = utcnow()
            try:
                with self.db.engine.begin() as conn:
                    conn.execute(delete(login_attempts).where(login_attempts.c.last_at < now - _FORGET_AFTER))
                    counted = conn.execute(update(login_attempts).where(
                        login_attempts.c.name == typed,
                        or_(login_attempts.c.locked_until.is_(None), login_attempts.c.locked_until <= now),
                    ).values(attempts=login_attempts.c.attempts + 1, last_at=now))  # the row stays locked to us
                    if not counted.rowcount:
                        locked = conn.execute(select(login_attempts.c.locked_until)
                                              .where(login_attempts.c.name == typed)).scalar()
                        if locked is not None:
                            wait = int((locked - now).total_seconds()) + 1
                            raise LoginRefused(f"too many failed sign-ins; try again in {wait} s", retry_after=wait)
                        conn.execute(login_attempts.insert().values(name=typed, attempts=1, last_at=now))
                    attempt = int(conn.execute(select(login_attempts.c.attempts)
                                               .where(login_attempts.c.name == typed)).scalar_one())
                    lock = None
                    if attempt >= FREE_FAILURES:
                        lock = now + min(LOCK_BASE * 2 ** (attempt - FREE_FAILURES), LOCK_MAX)
                        conn.execute(update(login_attempts).where(login_attempts.c.name == typed)
                                     .values(locked_until=lock))
                    return attempt, lock
            except IntegrityError:
                continue
        raise LoginRefused("too many sign-ins at once; try again in 1 s", retry_after=1)

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
