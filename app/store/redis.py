"""Redis store: every write is one Lua script, so readers never see half a model.

Keys (the `{tenant}` hash tag keeps a tenant's keys in one Cluster slot):
  <prefix>:{<tenant>}:model     hash {version}: which retained version is current
  <prefix>:{<tenant>}:v:<n>     hash {version, head (zlib'd safetensors bytes), meta (JSON), support (zlib'd JSON)}
                                for each retained version n (the newest `keep_versions`)
  <prefix>:{<tenant>}:versions  list of retained version numbers, newest first
  <prefix>:{<tenant>}:seq       version counter; survives DELETE so versions never repeat

Each version's bytes are stored once: reads of the current model go through a Lua script that
follows the `model` pointer atomically.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from app.store.base import JSON, StoredModel, StoreUnavailable, VersionInfo

T = TypeVar("T")

CORRUPT_META: JSON = {"schema": None, "unreadable": "stored metadata is not a JSON object"}
"""What `load` returns as metadata that cannot be parsed: `open_record` rejects it (schema check)."""

# Shared tail of the write scripts: publish (head, meta, support) as a new version.
# KEYS: model, seq, versions; ARGV[1..3] = head, meta, support; ARGV[4] ttl; ARGV[6] keep; ARGV[7] version-key prefix
_PUBLISH = """
local version = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', version)
redis.call('HSET', ARGV[7] .. version, 'version', version, 'head', ARGV[1], 'meta', ARGV[2], 'support', ARGV[3])
redis.call('LPUSH', KEYS[3], version)
local keep = tonumber(ARGV[6])
for _, old in ipairs(redis.call('LRANGE', KEYS[3], keep, -1)) do redis.call('DEL', ARGV[7] .. old) end
redis.call('LTRIM', KEYS[3], 0, keep - 1)
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
  for _, kept in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do redis.call('EXPIRE', ARGV[7] .. kept, ttl) end
end
return version
"""

# ARGV[5]: expected current version ('' = unconditional, '0' = no current model)
_SAVE_SCRIPT = (
    """
if ARGV[5] ~= '' then
  local current = redis.call('HGET', KEYS[1], 'version') or '0'
  if current ~= ARGV[5] then return -1 end
end
"""
    + _PUBLISH
)

# ARGV[5]: the version to restore; its data is re-published as a new version
_ROLLBACK_SCRIPT = (
    """
local source = redis.call('HMGET', ARGV[7] .. ARGV[5], 'head', 'meta', 'support')
if not source[1] then return -1 end
ARGV[1] = source[1]
ARGV[2] = source[2]
ARGV[3] = source[3]
"""
    + _PUBLISH
)

# KEYS: model; ARGV[1]: version-key prefix, ARGV[2..]: fields of the current version's hash (nil: no tenant)
_READ_CURRENT_SCRIPT = """
local version = redis.call('HGET', KEYS[1], 'version')
if not version then return nil end
return redis.call('HMGET', ARGV[1] .. version, unpack(ARGV, 2))
"""

# KEYS: model, versions; ARGV[1]: version-key prefix. Returns 1 when the tenant existed.
_DELETE_SCRIPT = """
local existed = redis.call('EXISTS', KEYS[1])
for _, kept in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do redis.call('DEL', ARGV[1] .. kept) end
redis.call('DEL', KEYS[1], KEYS[2])
return existed
"""


@contextmanager
def redis_errors() -> Iterator[None]:
    """Connection problems and timeouts become `StoreUnavailable` (503): the one translation of Redis errors."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise StoreUnavailable(f"redis unavailable: {exc}") from exc


def _translate_errors(method: Callable[..., T]) -> Callable[..., T]:
    """`redis_errors` around a method."""

    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with redis_errors():
            return method(*args, **kwargs)

    return wrapper


def connect(url: str, timeout_s: float = 2.0) -> redis.Redis:
    """A Redis client (one connection pool) for everything a process keeps in Redis: tenants, keys, rate limits.

    One immediate retry on a broken connection (a restarted Redis leaves stale pooled sockets), none on
    timeouts (a write's outcome is unknown): a call takes at most ~2 x timeout_s. redis-py's default
    (10 retries, backoff up to 1 s) would hold a worker for many seconds.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=15,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        decode_responses=False,
    )


def _decode_meta(raw: bytes) -> JSON:
    """Stored metadata, or `CORRUPT_META` when it is not a JSON object (tampered, truncated)."""
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return dict(CORRUPT_META)
    return meta if isinstance(meta, dict) else dict(CORRUPT_META)


HEAD_ZLIB_MAGIC = b"FSHEADZ1"
"""Prefix of a zlib'd head (a safetensors buffer starts with its header length, whose bytes 4-7 are zero)."""
HEAD_MAX_BYTES = 64 << 20
"""Refuse to inflate a stored head beyond this (500 labels x 384 dims take about 0.5 MB)."""


def encode_head(head: bytes) -> bytes:
    """zlib'd safetensors head: int8 rows shrink ~9 %, which moves a 77-label head (62 KB) below Redis's
    64 KB allocation class."""
    return HEAD_ZLIB_MAGIC + zlib.compress(head, 6)


def _inflate(data: bytes, max_bytes: int) -> bytes | None:
    """A whole zlib stream inflated, or None when it is not one or would exceed `max_bytes` (a tampered value
    must not exhaust memory)."""
    inflater = zlib.decompressobj()
    try:
        inflated = inflater.decompress(data, max_bytes)
    except zlib.error:
        return None
    return inflated if inflater.eof and not inflater.unconsumed_tail else None


def decode_head(raw: bytes) -> bytes:
    """The safetensors bytes of a stored head. A value that is not a whole zlib'd head comes back as stored, so
    it fails the record's head checksum like any corrupt head (and is rebuilt)."""
    head = _inflate(raw[len(HEAD_ZLIB_MAGIC) :], HEAD_MAX_BYTES) if raw.startswith(HEAD_ZLIB_MAGIC) else None
    return raw if head is None else head


SUPPORT_MAX_BYTES = 64 << 20
"""Refuse to inflate a stored support set beyond this."""


def encode_support(support: list[JSON]) -> bytes:
    """zlib-compressed JSON: support texts shrink to ~40 % (BANKING77 5-shot: ~120 bytes per label)."""
    return zlib.compress(json.dumps(support, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), 9)


def _decode_support(raw: bytes) -> list[JSON] | None:
    """A stored (zlib'd JSON) support set, or None when it is not a list of `{text, label}` strings."""
    inflated = _inflate(raw, SUPPORT_MAX_BYTES)
    if inflated is None:
        return None
    try:
        support = json.loads(inflated)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(support, list):
        return None
    for example in support:
        if not isinstance(example, dict) or not all(isinstance(example.get(k), str) for k in ("text", "label")):
            return None
    return support


def _glob_escape(text: str) -> str:
    """`text` as a literal inside a Redis MATCH pattern."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


class RedisStore:
    """`TenantStore` over redis-py with a connection pool and bounded timeouts."""

    def __init__(
        self,
        url: str,
        prefix: str = "fewshot",
        ttl_s: int | None = None,
        timeout_s: float = 2.0,
        keep_versions: int = 5,
        client: redis.Redis | None = None,
    ) -> None:
        """`client`: a shared connection pool (from `connect`); otherwise the store opens its own to `url`."""
        self._prefix = prefix
        self._ttl_s = ttl_s or 0
        self._keep_versions = max(1, keep_versions)
        self._client = client if client is not None else connect(url, timeout_s)
        self._save = self._client.register_script(_SAVE_SCRIPT)
        self._rollback = self._client.register_script(_ROLLBACK_SCRIPT)
        self._delete = self._client.register_script(_DELETE_SCRIPT)
        self._read_current = self._client.register_script(_READ_CURRENT_SCRIPT)

    def _key(self, tenant_id: str, suffix: str) -> str:
        return f"{self._prefix}:{{{tenant_id}}}:{suffix}"

    def _version_key(self, tenant_id: str, version: int) -> str:
        return self._key(tenant_id, f"v:{version}")

    def _write_keys(self, tenant_id: str) -> list[str]:
        return [self._key(tenant_id, "model"), self._key(tenant_id, "seq"), self._key(tenant_id, "versions")]

    @_translate_errors
    def save(
        self,
        tenant_id: str,
        head: bytes,
        meta: JSON,
        support: list[JSON],
        expected_version: int | None = None,
    ) -> int | None:
        args = [
            encode_head(head),
            json.dumps(meta, ensure_ascii=False, separators=(",", ":")),
            encode_support(support),
            self._ttl_s,
            "" if expected_version is None else str(expected_version),
            self._keep_versions,
            self._key(tenant_id, "v:"),
        ]
        version = int(self._save(keys=self._write_keys(tenant_id), args=args))
        return None if version < 0 else version

    @_translate_errors
    def rollback(self, tenant_id: str, version: int) -> int | None:
        args = ["", "", "", self._ttl_s, str(version), self._keep_versions, self._key(tenant_id, "v:")]
        new_version = int(self._rollback(keys=self._write_keys(tenant_id), args=args))
        return None if new_version < 0 else new_version

    def _fields(self, tenant_id: str, version: int | None, fields: list[str]) -> list[bytes | None]:
        """Fields of a retained version's hash, or of the current one (one atomic round trip)."""
        if version is not None:
            return list(self._client.hmget(self._version_key(tenant_id, version), fields))
        values = self._read_current(keys=[self._key(tenant_id, "model")], args=[self._key(tenant_id, "v:"), *fields])
        return [None] * len(fields) if values is None else list(values)

    @_translate_errors
    def load(self, tenant_id: str, version: int | None = None) -> StoredModel | None:
        stored, head, meta = self._fields(tenant_id, version, ["version", "head", "meta"])
        if stored is None or head is None or meta is None:
            return None
        return StoredModel(version=int(stored), head=decode_head(bytes(head)), meta=_decode_meta(meta))

    @_translate_errors
    def current_version(self, tenant_id: str) -> int | None:
        version = self._client.hget(self._key(tenant_id, "model"), "version")
        return None if version is None else int(version)

    @_translate_errors
    def load_support(self, tenant_id: str, version: int | None = None) -> list[JSON] | None:
        (support,) = self._fields(tenant_id, version, ["support"])
        return None if support is None else _decode_support(support)

    @_translate_errors
    def versions(self, tenant_id: str) -> list[VersionInfo]:
        numbers = [int(v) for v in self._client.lrange(self._key(tenant_id, "versions"), 0, -1)]
        pipe = self._client.pipeline(transaction=False)
        for number in numbers:
            pipe.hget(self._version_key(tenant_id, number), "meta")
        infos = []
        for number, raw_meta in zip(numbers, pipe.execute(), strict=True):
            if raw_meta is not None:
                meta = _decode_meta(raw_meta)
                size = meta.get("head_bytes")  # the head's own size (stored zlib'd); records always carry it
                if not isinstance(size, int):
                    size = len(decode_head(self._client.hget(self._version_key(tenant_id, number), "head") or b""))
                infos.append(VersionInfo(version=number, head_bytes=size, meta=meta))
        return infos

    @_translate_errors
    def delete(self, tenant_id: str) -> bool:
        keys = [self._key(tenant_id, "model"), self._key(tenant_id, "versions")]
        return bool(self._delete(keys=keys, args=[self._key(tenant_id, "v:")]))

    @_translate_errors
    def tenant_ids(self) -> list[str]:
        """Every tenant with a current model (SCAN over `<prefix>:{*}:model`; used by `GET /tenants`)."""
        start = len(self._prefix) + 2
        pattern = f"{_glob_escape(self._prefix)}:{{*}}:model"
        return [key.decode()[start:-7] for key in self._client.scan_iter(match=pattern, count=1000)]

    @_translate_errors
    def ping(self) -> None:
        self._client.ping()

    def close(self) -> None:
        self._client.close()
