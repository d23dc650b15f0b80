"""API keys: generated once, shown once, stored only as sha256 digests (memory or Redis)."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from app.store import RedisClient, redis_errors

KEY_PREFIX = "fsk_"


def new_key() -> str:
    """A fresh high-entropy API key (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    """The only form in which a key is ever stored or compared."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """A stored key's metadata; never the key itself."""

    key_id: str
    name: str
    admin: bool
    tenants: tuple[str, ...]
    prefix: str = field(default="", metadata={"doc": "first characters of the key, to recognise it"})
    created_at: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> ApiKey:
        data = json.loads(raw)
        return cls(**{**data, "tenants": tuple(data.get("tenants", ()))})


def make_record(name: str, admin: bool, tenants: list[str]) -> tuple[str, ApiKey]:
    """(clear key, its record) for a new key."""
    key = new_key()
    record = ApiKey(
        key_id=secrets.token_hex(6),
        name=name,
        admin=admin,
        tenants=tuple(sorted(set(tenants))),
        prefix=key[: len(KEY_PREFIX) + 4],
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return key, record


class KeyStore(Protocol):
    """Where key digests live."""

    def add(self, key_digest: str, record: ApiKey) -> None: ...

    def lookup(self, key_digest: str) -> ApiKey | None: ...

    def list(self) -> list[ApiKey]: ...

    def revoke(self, key_id: str) -> bool: ...

    def close(self) -> None: ...


class MemoryKeyStore:
    """Embedded mode: keys live as long as the process."""

    def __init__(self) -> None:
        self._by_digest: dict[str, ApiKey] = {}
        self._lock = threading.Lock()

    def add(self, key_digest: str, record: ApiKey) -> None:
        with self._lock:
            self._by_digest[key_digest] = record

    def lookup(self, key_digest: str) -> ApiKey | None:
        with self._lock:
            return self._by_digest.get(key_digest)

    def list(self) -> list[ApiKey]:
        with self._lock:
            return sorted(self._by_digest.values(), key=lambda r: (r.created_at, r.key_id))

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            found = [d for d, r in self._by_digest.items() if r.key_id == key_id]
            for key_digest in found:
                del self._by_digest[key_digest]
            return bool(found)

    def close(self) -> None:
        return None


class RedisKeyStore:
    """Two hashes: `<prefix>:{access}:keys` (digest -> record JSON) and `<prefix>:{access}:ids` (id -> digest).

    The `{access}` hash tag puts both in one Redis Cluster slot, so one MULTI writes both."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._client = client
        self._keys = f"{prefix}:{{access}}:keys"
        self._ids = f"{prefix}:{{access}}:ids"

    def add(self, key_digest: str, record: ApiKey) -> None:
        with redis_errors():
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(self._keys, key_digest, record.to_json())
            pipe.hset(self._ids, record.key_id, key_digest)
            pipe.execute()

    def lookup(self, key_digest: str) -> ApiKey | None:
        with redis_errors():
            raw = self._client.hget(self._keys, key_digest)
        return None if raw is None else ApiKey.from_json(raw)

    def list(self) -> list[ApiKey]:
        with redis_errors():
            raw = self._client.hvals(self._keys)
        return sorted((ApiKey.from_json(item) for item in raw), key=lambda r: (r.created_at, r.key_id))

    def revoke(self, key_id: str) -> bool:
        with redis_errors():
            key_digest = self._client.hget(self._ids, key_id)
            if key_digest is None:
                return False
            pipe = self._client.pipeline(transaction=True)
            pipe.hdel(self._keys, key_digest)
            pipe.hdel(self._ids, key_id)
            pipe.execute()
        return True

    def close(self) -> None:
        return None
