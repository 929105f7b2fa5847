"""The `redis` state provider: checkpoints in a Redis server (`topology.state.redis.url`),
which every host of a cluster reaches, so a task restarted on another host finds its state.

Keys are under `squall:state:<topology>:`. A task's committed state is a hash (`kv:<c>:<i>`)
of pickled keys to pickled values; each prepared write set is a hash (`pending:<c>:<i>:<txid>`)
whose values are 0x01 + value, or 0x00 for a deleted key; `txids:<c>:<i>` is a sorted set of
the prepared txids and `committed:<c>:<i>` the txid merged into the hash. Merging and dropping
run as Lua scripts, so each is atomic. Durability is the server's: deploy/start-redis.sh runs
it with an append-only file fsynced every second.

The `redis` client library is imported only when this provider is used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from topology.state.kv import DELETED
from topology.state.providers import (
    StateError,
    StateProvider,
    TaskStore,
    decode,
    encode_keys,
    encode_writes,
)

log = logging.getLogger(__name__)

SET, DEL = b"\x01", b"\x00"

# KEYS: kv, txids, committed. ARGV: txid, pending key prefix. Merge the prepared sets after
# the committed txid up to txid, in order; drop the sets before txid. Returns the committed
# txid found, unchanged if it was already >= txid.
_MERGE = """
local committed = tonumber(redis.call('GET', KEYS[3]) or '0')
local txid = tonumber(ARGV[1])
if txid <= committed then return committed end
for _, t in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. committed, txid)) do
  local entries = redis.call('HGETALL', ARGV[2] .. t)
  for i = 1, #entries, 2 do
    local v = entries[i + 1]
    if string.byte(v, 1) == 1 then
      redis.call('HSET', KEYS[1], entries[i], string.sub(v, 2))
    else
      redis.call('HDEL', KEYS[1], entries[i])
    end
  end
end
for _, t in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. txid)) do
  redis.call('DEL', ARGV[2] .. t)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. txid)
redis.call('SET', KEYS[3], txid)
return committed
"""

# KEYS: txids. ARGV: txid, pending key prefix. Drop the prepared sets after txid.
_DROP_AFTER = """
for _, t in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')) do
  redis.call('DEL', ARGV[2] .. t)
end
return redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
"""


class _RedisTaskStore(TaskStore):
    def __init__(self, provider: RedisProvider, component: str, index: int) -> None:
        super().__init__(provider.topology, component, index)
        self._provider = provider
        task = f"{component}:{index}"
        prefix = provider.prefix
        self._kv = f"{prefix}kv:{task}"
        self._txids = f"{prefix}txids:{task}"
        self._committed = f"{prefix}committed:{task}"
        self._pending = f"{prefix}pending:{task}:"

    def _run(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as e:
            raise StateError(f"{self.where}: {what} failed on redis "
                             f"{self._provider.url_shown}: {e}") from None

    def restore(self, txid: int) -> tuple[dict[Any, Any], dict[Any, Any]]:
        db = self._provider.db
        committed = int(self._run("restore", db.get, self._committed) or 0)
        if committed > txid:
            raise StateError(f"{self.where}: the store has txid {committed} committed, after "
                             f"the record's {txid}: the record or the store was lost")
        self.commit(txid)
        self.rollback(txid)
        state = {decode(k): decode(v) for k, v in self._run("restore", db.hscan_iter, self._kv)}
        pending = self._run("restore", db.hgetall, f"{self._pending}{txid}")
        changes = {decode(k): decode(v[1:]) if v[:1] == SET else DELETED
                   for k, v in pending.items()}
        return state, changes

    def prepare(self, txid: int, writes: Mapping[Any, Any], deletes: Iterable[Any]) -> None:
        mapping = {k: SET + v for k, v in encode_writes(self.where, writes)}
        mapping.update((k, DEL) for k in encode_keys(self.where, deletes))
        key = f"{self._pending}{txid}"

        def write() -> None:
            with self._provider.db.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if mapping:
                    pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
                pipe.zadd(self._txids, {str(txid): txid})
                pipe.execute()

        self._run(f"prepare txid {txid}", write)

    def commit(self, txid: int) -> None:
        self._run(f"commit txid {txid}", self._provider.merge,
                  keys=[self._kv, self._txids, self._committed], args=[txid, self._pending])

    def rollback(self, txid: int) -> None:
        self._run(f"roll back after txid {txid}", self._provider.drop_after,
                  keys=[self._txids], args=[txid, self._pending])


class RedisProvider(StateProvider):
    """Checkpoints in the Redis server at `url` (durable as the server is; multi-host)."""

    kind = "redis"

    def __init__(self, topology: str, url: str) -> None:
        super().__init__(topology)
        self.prefix = f"squall:state:{topology}:"
        self.url_shown = _without_password(url)
        try:
            self.db = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10)
        except ValueError as e:
            raise StateError(f"topology {topology!r}: bad topology.state.redis.url "
                             f"{self.url_shown!r}: {e}") from None
        self.merge = self.db.register_script(_MERGE)
        self.drop_after = self.db.register_script(_DROP_AFTER)

    def task_store(self, component: str, index: int) -> TaskStore:
        return _RedisTaskStore(self, component, index)

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except redis.RedisError as e:
            raise StateError(f"topology {self.topology!r}: {what} failed on redis "
                             f"{self.url_shown}: {e}") from None

    def _read(self, key: str, what: str) -> dict[str, Any] | None:
        text = self._call(f"reading the {what}", self.db.get, f"{self.prefix}{key}")
        if text is None:
            return None
        try:
            record: dict[str, Any] = json.loads(text)
        except ValueError as e:
            raise StateError(f"topology {self.topology!r}: its {what} on redis "
                             f"{self.url_shown} is damaged: {e}") from None
        return record

    def read_record(self) -> dict[str, Any] | None:
        return self._read("record", "commit record")

    def read_control(self) -> dict[str, Any] | None:
        return self._read("control", "checkpoint directive")

    def write_control(self, control: Mapping[str, Any]) -> None:
        self._call("writing the checkpoint directive", self.db.set, f"{self.prefix}control",
                   json.dumps(dict(control)))

    def write_record(self, record: Mapping[str, Any]) -> None:
        self._call("writing the commit record", self.db.set, f"{self.prefix}record",
                   json.dumps(dict(record)))

    def clear(self) -> None:
        def delete_all() -> None:
            keys = list(self.db.scan_iter(match=f"{self.prefix}*", count=1000))
            for i in range(0, len(keys), 1000):
                self.db.delete(*keys[i:i + 1000])

        self._call("clearing its state", delete_all)

    def close(self) -> None:
        self.db.close()


def _without_password(url: str) -> str:
    """The URL as it may be shown in logs and errors."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
