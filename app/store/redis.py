"""Redis store (single server or Redis Cluster): every write is one Lua script, so readers never see half a model.

Keys (the `{tenant}` hash tag puts a tenant's keys in one Cluster slot; every script declares the ones it touches
in KEYS):
  <prefix>:{<tenant>}:model  hash: `version` (the current one), `versions` (retained numbers, newest first,
                             space-separated) and, for each retained version n (the newest `keep_versions`),
                             `<n>:head` (zlib'd safetensors), `<n>:meta` (JSON), `<n>:support` (zlib'd JSON)
  <prefix>:{<tenant>}:seq    version counter; no TTL, survives DELETE so versions never repeat
  <prefix>:{<tenant>}:unlabeled  sorted set: the pool of unlabeled texts (member: the text, score: arrival
                             order); written only while the model exists, expires with it, deleted with it

Two keys per tenant, three once it pools unlabeled texts (Redis spends ~100 bytes on each key): a million tenants
cost little beyond their bytes.
Each version's bytes are stored once; reading the current model is one script that follows `version`.
With `wait_replicas`, a write is acknowledged only once that many replicas confirm it (`WAIT`).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import redis
from redis.exceptions import AskError, MovedError

from app.store.base import JSON, PoolUpdate, StoredModel, StoreUnavailable, VersionInfo
from app.store.client import (
    UNAVAILABLE_ERRORS,
    RedisClient,
    connect,
    glob_escape,
    node_client,
    ping,
    primaries,
    redis_errors,
    refresh_topology,
    translate_errors,
)

__all__ = ["RedisStore", "connect", "redis_errors"]

CORRUPT_META: JSON = {"schema": None, "unreadable": "stored metadata is not a JSON object"}
"""What `load` returns as metadata that cannot be parsed: `open_record` rejects it (schema check)."""

VERSION_FIELDS = ("head", "meta", "support")
"""A retained version n is the fields `<n>:head`, `<n>:meta`, `<n>:support` of the tenant's model hash."""

# Shared tail of the write scripts: publish (head, meta, support) as a new version; the pool takes the model's TTL.
# KEYS: model, seq, unlabeled; ARGV[1..3] = head, meta, support; ARGV[4] ttl; ARGV[6] keep
_PUBLISH = """
local version = redis.call('INCR', KEYS[2])
local retained = {tostring(version)}
for old in string.gmatch(redis.call('HGET', KEYS[1], 'versions') or '', '%d+') do
  table.insert(retained, old)
end
local keep = tonumber(ARGV[6])
for i = keep + 1, #retained do
  redis.call('HDEL', KEYS[1], retained[i] .. ':head', retained[i] .. ':meta', retained[i] .. ':support')
end
redis.call('HSET', KEYS[1], 'version', version, 'versions', table.concat(retained, ' ', 1, math.min(keep, #retained)),
  version .. ':head', ARGV[1], version .. ':meta', ARGV[2], version .. ':support', ARGV[3])
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
else
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[3])
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
local source = redis.call('HMGET', KEYS[1], ARGV[5] .. ':head', ARGV[5] .. ':meta', ARGV[5] .. ':support')
if not source[1] then return -1 end
ARGV[1] = source[1]
ARGV[2] = source[2]
ARGV[3] = source[3]
"""
    + _PUBLISH
)

# KEYS: model; ARGV: fields of the current version (`head`, ...). Returns {version, values...}, nil: no tenant
_READ_CURRENT_SCRIPT = """
local version = redis.call('HGET', KEYS[1], 'version')
if not version then return nil end
local fields = {}
for i, name in ipairs(ARGV) do fields[i] = version .. ':' .. name end
local values = redis.call('HMGET', KEYS[1], unpack(fields))
table.insert(values, 1, version)
return values
"""

# KEYS: model, unlabeled. Returns 1 when the tenant existed (`seq` stays).
_DELETE_SCRIPT = """
redis.call('DEL', KEYS[2])
return redis.call('DEL', KEYS[1])
"""

# KEYS: model, unlabeled; ARGV[1] the pool's cap, ARGV[2..] texts. Returns {added, repeated, dropped, size}; -1
# (nothing written) when the tenant has no model. Each text is scored one above the pool's highest score.
_ADD_UNLABELED_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local score = tonumber(newest[2] or '0')
local added, repeated = 0, 0
for i = 2, #ARGV do
  score = score + 1
  if redis.call('ZADD', KEYS[2], score, ARGV[i]) == 1 then added = added + 1 else repeated = repeated + 1 end
end
local size = redis.call('ZCARD', KEYS[2])
local dropped = 0
if size > tonumber(ARGV[1]) then
  dropped = redis.call('ZREMRANGEBYRANK', KEYS[2], 0, size - tonumber(ARGV[1]) - 1)
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl >= 0 then redis.call('PEXPIRE', KEYS[2], math.max(ttl, 1)) else redis.call('PERSIST', KEYS[2]) end
return {added, repeated, dropped, size - dropped}
"""

# KEYS: unlabeled. Returns how many texts the pool held.
_CLEAR_UNLABELED_SCRIPT = """
local held = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1])
return held
"""


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
    """A stored (zlib'd JSON) support set, or None when it is not a list of `{text, label}` rows (multi-label:
    `{text, labels}` with a list of strings)."""
    inflated = _inflate(raw, SUPPORT_MAX_BYTES)
    if inflated is None:
        return None
    try:
        support = json.loads(inflated)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(support, list):
        return None
    return support if all(_is_support_row(example) for example in support) else None


def _is_support_row(example: object) -> bool:
    if not isinstance(example, dict) or not isinstance(example.get("text"), str):
        return False
    labels = example.get("labels")
    if labels is not None:
        return isinstance(labels, list) and all(isinstance(label, str) for label in labels)
    return isinstance(example.get("label"), str)


def _refused(reply: object) -> bool:
    """Whether a write script's reply says it wrote nothing (a negative integer)."""
    return isinstance(reply, int) and reply < 0


class RedisStore:
    """`TenantStore` over redis-py (one server or a cluster) with bounded timeouts."""

    in_process = False  # every call is a network round trip: never on an event loop

    def __init__(
        self,
        url: str,
        prefix: str = "fewshot",
        ttl_s: int | None = None,
        timeout_s: float = 2.0,
        keep_versions: int = 5,
        client: RedisClient | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        """`client`: the process's shared client (from `connect`); otherwise the store opens its own to `url`.
        `wait_replicas` > 0: every write returns only after that many replicas confirmed it (`WAIT`, at most
        `wait_timeout_ms`), else raises `StoreUnavailable` (the write may or may not survive a failover)."""
        self._prefix = prefix
        self._ttl_s = ttl_s or 0
        self._keep_versions = max(1, keep_versions)
        self._wait = (wait_replicas, wait_timeout_ms)
        self._client = client if client is not None else connect(url, timeout_s)
        self._save = self._client.register_script(_SAVE_SCRIPT)
        self._rollback = self._client.register_script(_ROLLBACK_SCRIPT)
        self._delete = self._client.register_script(_DELETE_SCRIPT)
        self._read_current = self._client.register_script(_READ_CURRENT_SCRIPT)
        self._add_unlabeled = self._client.register_script(_ADD_UNLABELED_SCRIPT)
        self._clear_unlabeled = self._client.register_script(_CLEAR_UNLABELED_SCRIPT)

    def _key(self, tenant_id: str, suffix: str) -> str:
        return f"{self._prefix}:{{{tenant_id}}}:{suffix}"

    def model_key(self, tenant_id: str) -> str:
        """The hash holding a tenant's current version and every retained version's fields."""
        return self._key(tenant_id, "model")

    def unlabeled_key(self, tenant_id: str) -> str:
        """The sorted set holding a tenant's pool of unlabeled texts."""
        return self._key(tenant_id, "unlabeled")

    def _write_keys(self, tenant_id: str) -> list[str]:
        return [self.model_key(tenant_id), self._key(tenant_id, "seq"), self.unlabeled_key(tenant_id)]

    def _write(self, script: redis.commands.core.Script, keys: list[str], args: list[object]) -> Any:
        """Run a write script and return its reply (a negative integer: nothing written); with `wait_replicas`,
        on one connection followed by `WAIT` (WAIT counts only the writes of its own connection, so it must
        share the script's)."""
        replicas, timeout_ms = self._wait
        if replicas <= 0:
            return script(keys=keys, args=args)
        for attempt in range(2):
            pipe = node_client(self._client, keys[0]).pipeline(transaction=False)
            script(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            try:
                result, acknowledged = pipe.execute()
            except (MovedError, AskError) as exc:  # the slot moved (failover, resharding): re-read the map
                if attempt:
                    raise StoreUnavailable(f"redis slot moving: {exc}") from exc
                refresh_topology(self._client)
                continue
            except UNAVAILABLE_ERRORS as exc:  # not retried (the write's outcome is unknown); the next call
                refresh_topology(self._client)  # goes to the slot's current primary
                raise StoreUnavailable(f"redis unavailable: {exc}") from exc
            if not _refused(result) and int(acknowledged) < replicas:
                raise StoreUnavailable(f"write confirmed by {acknowledged} of {replicas} replicas in {timeout_ms} ms")
            return result
        raise AssertionError("unreachable")

    @translate_errors
    def save(
        self,
        tenant_id: str,
        head: bytes,
        meta: JSON,
        support: list[JSON],
        expected_version: int | None = None,
    ) -> int | None:
        args: list[object] = [
            encode_head(head),
            json.dumps(meta, ensure_ascii=False, separators=(",", ":")),
            encode_support(support),
            self._ttl_s,
            "" if expected_version is None else str(expected_version),
            self._keep_versions,
        ]
        version = int(self._write(self._save, self._write_keys(tenant_id), args))
        return None if version < 0 else version

    @translate_errors
    def rollback(self, tenant_id: str, version: int) -> int | None:
        args: list[object] = ["", "", "", self._ttl_s, str(version), self._keep_versions]
        new_version = int(self._write(self._rollback, self._write_keys(tenant_id), args))
        return None if new_version < 0 else new_version

    def _fields(self, tenant_id: str, version: int | None, fields: list[str]) -> tuple[int | None, list[bytes | None]]:
        """(version, its fields) of a retained version or of the current one (one atomic round trip)."""
        key = self.model_key(tenant_id)
        if version is not None:
            return version, list(self._client.hmget(key, [f"{version}:{field}" for field in fields]))
        values = self._read_current(keys=[key], args=fields)
        if values is None:
            return None, [None] * len(fields)
        return int(values[0]), list(values[1:])

    @translate_errors
    def load(self, tenant_id: str, version: int | None = None) -> StoredModel | None:
        stored, (head, meta) = self._fields(tenant_id, version, ["head", "meta"])
        if stored is None or head is None or meta is None:
            return None
        return StoredModel(version=stored, head=decode_head(bytes(head)), meta=_decode_meta(meta))

    @translate_errors
    def current_version(self, tenant_id: str) -> int | None:
        version = self._client.hget(self.model_key(tenant_id), "version")
        return None if version is None else int(version)

    @translate_errors
    def load_support(self, tenant_id: str, version: int | None = None) -> list[JSON] | None:
        _, (support,) = self._fields(tenant_id, version, ["support"])
        return None if support is None else _decode_support(support)

    @translate_errors
    def versions(self, tenant_id: str) -> list[VersionInfo]:
        key = self.model_key(tenant_id)
        numbers = [int(v) for v in (self._client.hget(key, "versions") or b"").split()]
        if not numbers:
            return []
        infos = []
        metas = self._client.hmget(key, [f"{number}:meta" for number in numbers])
        for number, raw_meta in zip(numbers, metas, strict=True):
            if raw_meta is not None:
                meta = _decode_meta(raw_meta)
                size = meta.get("head_bytes")  # the head's own size (stored zlib'd); records always carry it
                if not isinstance(size, int):
                    size = len(decode_head(self._client.hget(key, f"{number}:head") or b""))
                infos.append(VersionInfo(version=number, head_bytes=size, meta=meta))
        return infos

    @translate_errors
    def delete(self, tenant_id: str) -> bool:
        return bool(self._write(self._delete, [self.model_key(tenant_id), self.unlabeled_key(tenant_id)], []))

    @translate_errors
    def add_unlabeled(self, tenant_id: str, texts: list[str], max_texts: int) -> PoolUpdate | None:
        keys = [self.model_key(tenant_id), self.unlabeled_key(tenant_id)]
        result = self._write(self._add_unlabeled, keys, [max(0, max_texts), *texts])
        if _refused(result):
            return None
        added, repeated, dropped, size = (int(value) for value in result)
        return PoolUpdate(added=added, repeated=repeated, dropped=dropped, size=size)

    @translate_errors
    def unlabeled(self, tenant_id: str, limit: int | None = None) -> list[str]:
        if limit is not None and limit <= 0:
            return []
        texts = self._client.zrevrange(self.unlabeled_key(tenant_id), 0, -1 if limit is None else limit - 1)
        return [text.decode("utf-8") for text in texts]

    @translate_errors
    def unlabeled_size(self, tenant_id: str) -> int:
        return int(self._client.zcard(self.unlabeled_key(tenant_id)))

    @translate_errors
    def clear_unlabeled(self, tenant_id: str) -> int:
        return int(self._write(self._clear_unlabeled, [self.unlabeled_key(tenant_id)], []))

    @translate_errors
    def tenant_ids(self) -> list[str]:
        """Every tenant with a current model: SCAN over `<prefix>:{*}:model` on every primary (`GET /tenants`)."""
        start = len(self._prefix) + 2
        pattern = f"{glob_escape(self._prefix)}:{{*}}:model"
        return [
            key.decode()[start:-7]
            for primary in primaries(self._client)
            for key in primary.scan_iter(match=pattern, count=1000)
        ]

    @translate_errors
    def ping(self) -> None:
        ping(self._client)

    def close(self) -> None:
        self._client.close()
