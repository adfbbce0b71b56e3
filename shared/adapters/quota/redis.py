"""RedisProviderQuota: provider quotas in Redis, shared by every worker process with REDIS_URL.

Exact moving windows kept by Lua scripts, so a check and its slot are one atomic step whatever
the number of workers, timed by the Redis server's clock (TIME), so the workers' clocks do not
matter. Keys, per provider (hash-tagged: one Cluster slot):
- `chatjobs:quota:{<provider>}:calls`: sorted set, a member per call, scored by when it took its
  slot (ms); kept only with a calls-per-minute limit;
- `chatjobs:quota:{<provider>}:tokens`: sorted set, `<id>:<tokens>` per finished call, scored by
  when it ended; kept only with a tokens-per-minute limit;
- `chatjobs:quota:{<provider>}:paused`: the end of a pause after a 429 (ms), expiring with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from redis.asyncio import Redis

from shared.quotas import QUOTA_WINDOW_S, QuotaLimits, limits_of

PREFIX = "chatjobs:quota:"

# KEYS: calls, tokens, paused. ARGV: window ms, rpm, tpm, take (1/0), member.
# Returns the wait in ms: 0 when the call may go (and, with take and a rpm, its slot is taken).
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wait = 0
local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused > now then wait = paused - now end
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local held = redis.call('ZCARD', KEYS[1])
  if held >= rpm then
    local freeing = redis.call('ZRANGE', KEYS[1], held - rpm, held - rpm, 'WITHSCORES')
    wait = math.max(wait, tonumber(freeing[2]) + window - now)
  end
end
if tpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  local spent = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local total = 0
  for i = 1, #spent, 2 do total = total + tonumber(string.match(spent[i], ':(%d+)$')) end
  local i = 1
  while total >= tpm and i < #spent do
    total = total - tonumber(string.match(spent[i], ':(%d+)$'))
    if total < tpm then wait = math.max(wait, tonumber(spent[i + 1]) + window - now) end
    i = i + 2
  end
end
if wait <= 0 and ARGV[4] == '1' and rpm > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], window)
end
return math.ceil(math.max(wait, 0))
"""

# KEYS: tokens. ARGV: window ms, member (`<id>:<tokens>`).
SPEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# KEYS: paused. ARGV: pause ms. A pause only ever grows.
PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + ms > current then redis.call('SET', KEYS[1], now + ms, 'PX', ms) end
return 1
"""


class RedisProviderQuota:
    """The client connects on first use, so building one never touches the network."""

    def __init__(
        self,
        redis_url: str,
        limits: Mapping[str, QuotaLimits],
        *,
        window_s: float = QUOTA_WINDOW_S,
        timeout_s: float = 1.0,
    ) -> None:
        self._redis: Redis = Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._limits, self._window_ms = dict(limits), round(window_s * 1000)
        self._acquire = self._redis.register_script(ACQUIRE)
        self._spend = self._redis.register_script(SPEND)
        self._pause = self._redis.register_script(PAUSE)

    async def acquire(self, provider: str) -> float:
        return await self._ask(provider, take=True)

    async def wait_s(self, provider: str) -> float:
        return await self._ask(provider, take=False)

    async def spend_tokens(self, provider: str, tokens: int) -> None:
        if tokens > 0 and limits_of(self._limits, provider).tpm > 0:
            member = f"{uuid.uuid4().hex}:{tokens}"
            await self._spend(keys=[_key(provider, "tokens")], args=[self._window_ms, member])

    async def pause(self, provider: str, seconds: float) -> None:
        ms = max(round(seconds * 1000), 1)
        await self._pause(keys=[_key(provider, "paused")], args=[ms])

    async def close(self) -> None:
        await self._redis.aclose()

    async def _ask(self, provider: str, *, take: bool) -> float:
        limits = limits_of(self._limits, provider)
        keys = [_key(provider, "calls"), _key(provider, "tokens"), _key(provider, "paused")]
        args = [self._window_ms, limits.rpm, limits.tpm, int(take), uuid.uuid4().hex]
        wait_ms = await self._acquire(keys=keys, args=args)
        return int(wait_ms) / 1000


def _key(provider: str, part: str) -> str:
    return f"{PREFIX}{{{provider}}}:{part}"
