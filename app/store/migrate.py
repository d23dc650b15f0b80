"""One-off migration of Redis data written before the cluster layout (issue 19): run it once, with the API stopped,
before starting the new version.

    python -m app.store.migrate --redis-url redis://host:6379/0 --prefix fewshot

Old layout -> new layout:
  <prefix>:{t}:v:<n> hashes + <prefix>:{t}:versions list  ->  fields `<n>:head|meta|support` + `versions` of
                                                              <prefix>:{t}:model (its TTL kept)
  <prefix>:access:keys / <prefix>:access:ids              ->  <prefix>:{access}:keys / <prefix>:{access}:ids
Idempotent: tenants already in the new layout (no `versions` list) and absent old access hashes are skipped.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from app.store.client import RedisClient, connect, glob_escape, primaries, redis_errors

# KEYS: model, versions, v:<n> for each n in ARGV (the list as the client read it). -1: the list changed, retry.
_MIGRATE_TENANT = """
local listed = redis.call('LRANGE', KEYS[2], 0, -1)
if #listed ~= #ARGV then return -1 end
for i, n in ipairs(listed) do if n ~= ARGV[i] then return -1 end end
local ttl = redis.call('PTTL', KEYS[1])
for i, n in ipairs(ARGV) do
  local fields = redis.call('HMGET', KEYS[i + 2], 'head', 'meta', 'support')
  if fields[1] then
    redis.call('HSET', KEYS[1], n .. ':head', fields[1], n .. ':meta', fields[2], n .. ':support', fields[3])
  end
end
local kept = {}
for _, n in ipairs(ARGV) do
  if redis.call('HEXISTS', KEYS[1], n .. ':head') == 1 then table.insert(kept, n) end
end
if #kept > 0 then
  redis.call('HSET', KEYS[1], 'versions', table.concat(kept, ' '))
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
end
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return #kept
"""


@dataclass(frozen=True)
class MigrationReport:
    tenants: int
    versions: int
    access_hashes: int


def migrate(client: RedisClient, prefix: str) -> MigrationReport:
    """Move every old-layout tenant and the access hashes of `prefix` to the new layout."""
    script = client.register_script(_MIGRATE_TENANT)
    tenants = versions = 0
    start = len(prefix) + 2
    with redis_errors():
        for primary in primaries(client):
            for key in primary.scan_iter(match=f"{glob_escape(prefix)}:{{*}}:versions", count=1000):
                tenant = key.decode()[start:-10]
                base = f"{prefix}:{{{tenant}}}"
                while True:
                    numbers = [n.decode() for n in client.lrange(f"{base}:versions", 0, -1)]
                    keys = [f"{base}:model", f"{base}:versions", *(f"{base}:v:{n}" for n in numbers)]
                    moved = int(script(keys=keys, args=numbers))
                    if moved >= 0:
                        break
                tenants, versions = tenants + 1, versions + moved
        access_hashes = sum(
            _move_hash(client, f"{prefix}:access:{n}", f"{prefix}:{{access}}:{n}") for n in ("keys", "ids")
        )
    return MigrationReport(tenants=tenants, versions=versions, access_hashes=access_hashes)


def _move_hash(client: RedisClient, old: str, new: str) -> int:
    """Copy a hash to its new name (another slot on a cluster, so not RENAME), then delete the old one."""
    entries = client.hgetall(old)
    if not entries:
        return 0
    client.hset(new, mapping=entries)
    client.delete(old)
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", required=True, help="as FEWSHOT_REDIS_URL (redis+cluster:// for a cluster)")
    parser.add_argument("--prefix", default="fewshot", help="as FEWSHOT_REDIS_PREFIX")
    args = parser.parse_args()
    report = migrate(connect(args.redis_url), args.prefix)
    print(f"migrated {report.tenants} tenants ({report.versions} versions), {report.access_hashes} access hashes")


if __name__ == "__main__":
    main()
