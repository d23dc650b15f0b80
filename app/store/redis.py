"""Redis store: one hash per tenant written by a Lua script, so readers never see half a model.

Keys (the `{tenant}` hash tag keeps both in one Cluster slot):
  <prefix>:{<tenant>}:model  hash {version, head (safetensors bytes), meta (JSON), support (JSON)}
  <prefix>:{<tenant>}:seq    version counter; survives DELETE so versions never repeat
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.store.base import JSON, StoredModel, StoreUnavailable

T = TypeVar("T")

_SAVE_SCRIPT = """
if ARGV[5] ~= '' then
  local current = redis.call('HGET', KEYS[1], 'version')
  if current ~= ARGV[5] then return -1 end
end
local version = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', version, 'head', ARGV[1], 'meta', ARGV[2], 'support', ARGV[3])
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return version
"""


def _translate_errors(method: Callable[..., T]) -> Callable[..., T]:
    """Turn connection problems and timeouts into `StoreUnavailable`."""

    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return method(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc

    return wrapper


class RedisStore:
    """`TenantStore` over redis-py with a connection pool and bounded timeouts."""

    def __init__(
        self,
        url: str,
        prefix: str = "fewshot",
        ttl_s: int | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        self._prefix = prefix
        self._ttl_s = ttl_s or 0
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=15,
            decode_responses=False,
        )
        self._save = self._client.register_script(_SAVE_SCRIPT)

    def _model_key(self, tenant_id: str) -> str:
        return f"{self._prefix}:{{{tenant_id}}}:model"

    def _seq_key(self, tenant_id: str) -> str:
        return f"{self._prefix}:{{{tenant_id}}}:seq"

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
            head,
            json.dumps(meta, ensure_ascii=False),
            json.dumps(support, ensure_ascii=False),
            self._ttl_s,
            "" if expected_version is None else str(expected_version),
        ]
        version = int(self._save(keys=[self._model_key(tenant_id), self._seq_key(tenant_id)], args=args))
        return None if version < 0 else version

    @_translate_errors
    def load(self, tenant_id: str) -> StoredModel | None:
        version, head, meta = self._client.hmget(self._model_key(tenant_id), ["version", "head", "meta"])
        if version is None or head is None or meta is None:
            return None
        return StoredModel(version=int(version), head=bytes(head), meta=json.loads(meta))

    @_translate_errors
    def current_version(self, tenant_id: str) -> int | None:
        version = self._client.hget(self._model_key(tenant_id), "version")
        return None if version is None else int(version)

    @_translate_errors
    def load_support(self, tenant_id: str) -> list[JSON] | None:
        support = self._client.hget(self._model_key(tenant_id), "support")
        return None if support is None else json.loads(support)

    @_translate_errors
    def delete(self, tenant_id: str) -> bool:
        return bool(self._client.delete(self._model_key(tenant_id)))

    @_translate_errors
    def ping(self) -> None:
        self._client.ping()

    @_translate_errors
    def memory_usage(self, tenant_id: str) -> int | None:
        """Bytes Redis uses for the tenant's keys (MEMORY USAGE), for benchmarks."""
        model = self._client.memory_usage(self._model_key(tenant_id), samples=0)
        seq = self._client.memory_usage(self._seq_key(tenant_id), samples=0)
        return None if model is None else int(model) + int(seq or 0)

    def close(self) -> None:
        self._client.close()
