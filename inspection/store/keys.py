"""API keys, stored hashed. A key reads `qc_<id>_<secret>`: the id finds the row, the secret
is compared with its sha256 in constant time.

Why sha256 and not bcrypt: the secret is 32 random bytes, not a password a person chose; a
slow hash protects guessable secrets and would only add milliseconds to every frame.

Example::

    keys = KeyStore(db)
    token = keys.create(role="station", stations=["line1-cam2"], name="line 1 camera 2")
    keys.verify(token).role   # Role.STATION
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from inspection.errors import ConfigError, NotFound
from inspection.roles import Role
from inspection.store.database import Database
from inspection.store.records import utcnow
from inspection.store.schema import api_keys
from inspection.store.schema import stations as station_table


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    role: Role
    stations: list[str]
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, *, role: Role | str, stations: list[str] | None = None, name: str = "") -> str:
        """A new key; the plain token is returned once and never stored."""
        role = Role.parse(role)
        if role is Role.STATION and not stations:
            raise ConfigError("a station key needs --station S (the stations it may inspect as)")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self.db.engine.begin() as conn:
            # A key for a misspelt station would be refused (403) forever: say so now.
            known = set(conn.execute(select(station_table.c.id).where(
                station_table.c.id.in_(stations or []))).scalars())
            for station in stations or []:
                if station not in known:
                    raise NotFound(f"station {station} does not exist; add it with qc stations add {station}")
            conn.execute(
                api_keys.insert().values(
                    id=key_id, secret_hash=_hash(secret), role=role.value, stations=list(stations or []),
                    name=name, created_at=utcnow(),
                )
            )
        return f"qc_{key_id}_{secret}"

    def verify(self, token: str) -> ApiKey | None:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "qc":
            return None
        _, key_id, secret = parts
        with self.db.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(row["secret_hash"], _hash(secret)):
            return None
        return _key(row)

    def list(self) -> list[ApiKey]:
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).mappings().all()
        return [_key(row) for row in rows]

    def revoke(self, key_id: str) -> None:
        with self.db.engine.begin() as conn:
            done = conn.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=utcnow())
            )
        if not done.rowcount:
            raise NotFound(f"API key {key_id} does not exist; see qc keys list")


def _key(row) -> ApiKey:
    return ApiKey(
        id=row["id"], role=Role(row["role"]), stations=list(row["stations"] or []), name=row["name"],
        created_at=row["created_at"], revoked_at=row["revoked_at"],
    )
