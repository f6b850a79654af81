"""API keys on every route but health: `Authorization: Bearer qc_<id>_<secret>`.

Example::

    auth = Authenticator(KeyStore(db))
    key = auth.verify("qc_0a1b2c3d4e5f_...")   # ApiKey or None; cached for CACHE_SECONDS

Who may do what is `inspection.roles.Role`; the routes' guards are the aliases in
`serving/deps.py`. Verified keys are cached for `CACHE_SECONDS` so that a frame costs no
database read for auth; a revoked key therefore stops working within that time, except
through this process's own API, which forgets the cache at once.
"""

from __future__ import annotations

import hashlib
import time

from inspection.store.keys import ApiKey, KeyStore

CACHE_SECONDS = 30.0


class Authenticator:
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys
        self._cache: dict[str, tuple[ApiKey, float]] = {}

    def cached(self, token: str) -> ApiKey | None:
        """The key, if it was verified within CACHE_SECONDS (no database read)."""
        hit = self._cache.get(hashlib.sha256(token.encode()).hexdigest())
        return hit[0] if hit and hit[1] > time.monotonic() else None

    def verify(self, token: str) -> ApiKey | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        hit = self._cache.get(digest)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        key = self.keys.verify(token)
        if key is not None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (key, time.monotonic() + CACHE_SECONDS)
        return key

    def forget(self) -> None:
        self._cache.clear()
