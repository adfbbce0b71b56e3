"""The Redis layout of the lanes the arq queue keeps outside arq (docs/adr/0015), and its scripts.

Batch jobs wait in lanes, never in arq's queue:
- `chatjobs:turns:<priority>`: sorted set, tenant -> turn (the lowest turn goes next);
- `chatjobs:turns:<priority>:<tenant>`: sorted set, the tenant's groups (batch ids) -> turn;
- `chatjobs:jobs:<priority>:<tenant>:<group>`: list of the group's waiting job ids;
- `chatjobs:batch-waiting`: set of every job id waiting in a lane or in `chatjobs:delayed`.

Delays (retries, waits) of any job wait in `chatjobs:delayed`, a sorted set by due time in ms,
whose members name the job and its lane. Once due, each is handed back, to become an arq job at
its priority's score (`ArqJobQueue.release_due`): arq's own deferred jobs would come due behind
every job already waiting, whatever their priority. A batch job's retry, too, comes back as a
single job of its lane, as it did before priorities (docs/adr/0009).

Groups written before priorities existed (`chatjobs:groups`, `chatjobs:group:<name>`) are still
taken, as `normal` jobs of no tenant, after the new `normal` lanes.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.lanes import DEFAULT_LANE, Lane, priority_or_default

PREFIX = "chatjobs:"
TURNS = PREFIX + "turns:"
JOBS = PREFIX + "jobs:"
WAITING_KEY = PREFIX + "batch-waiting"
DELAYED_KEY = PREFIX + "delayed"
LEGACY_GROUPS_KEY = PREFIX + "groups"  # before issue 16: one sorted set of groups …
LEGACY_GROUP_PREFIX = PREFIX + "group:"  # … and a list per group
DEFAULT_GROUP = "_"
SEP = "\x1f"  # between the parts of a delayed entry: never in a job id, tenant or priority


def tenants_key(priority: str) -> str:
    return TURNS + priority


def groups_key(lane: Lane) -> str:
    return f"{TURNS}{lane.priority}:{lane.tenant}"


def jobs_key(lane: Lane, group: str) -> str:
    return f"{JOBS}{lane.priority}:{lane.tenant}:{group}"


@dataclass(frozen=True)
class BatchJob:
    id: str
    group: str
    lane: Lane = DEFAULT_LANE


@dataclass(frozen=True)
class Delayed:
    id: str
    lane: Lane

    def entry(self) -> str:
        return SEP.join((self.lane.priority, self.lane.tenant, self.id))

    @classmethod
    def parse(cls, raw: bytes | str) -> Delayed:
        text = raw.decode() if isinstance(raw, bytes) else raw
        priority, tenant, job_id = text.split(SEP, 2)
        return cls(job_id, Lane(priority_or_default(priority), tenant))


# One job is: pop the head of the head group of the head tenant; the group goes to the back of its
# tenant's turns (or away, once empty), then the tenant to the back of the priority's (or away).
# Priorities in the order of ARGV[3..]; the legacy groups right after `normal`.
# KEYS: waiting set, legacy groups. ARGV: count, prefix, priorities…
# Returns {id, group, priority, tenant, …}.
TAKE = """
local function rotate(zset, member, gone)
  if gone then
    redis.call('ZREM', zset, member)
  else
    local last = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')
    redis.call('ZADD', zset, tonumber(last[2]) + 1, member)
  end
end
local want = 4 * tonumber(ARGV[1])
local taken = {}
local function keep(job_id, group, priority, tenant)
  if job_id then
    redis.call('SREM', KEYS[1], job_id)
    for _, v in ipairs({job_id, group, priority, tenant}) do taken[#taken + 1] = v end
  end
end
for i = 3, #ARGV do
  local priority = ARGV[i]
  local tenants = ARGV[2] .. 'turns:' .. priority
  while #taken < want do
    local head = redis.call('ZRANGE', tenants, 0, 0)
    if #head == 0 then break end
    local tenant = head[1]
    local groups = tenants .. ':' .. tenant
    local group = redis.call('ZRANGE', groups, 0, 0)[1]
    if group == nil then
      redis.call('ZREM', tenants, tenant)
    else
      local list = ARGV[2] .. 'jobs:' .. priority .. ':' .. tenant .. ':' .. group
      local job_id = redis.call('LPOP', list)
      rotate(groups, group, redis.call('LLEN', list) == 0)
      rotate(tenants, tenant, redis.call('ZCARD', groups) == 0)
      keep(job_id, group, priority, tenant)
    end
  end
  while priority == 'normal' and #taken < want do
    local head = redis.call('ZRANGE', KEYS[2], 0, 0)
    if #head == 0 then break end
    local list = ARGV[2] .. 'group:' .. head[1]
    local job_id = redis.call('LPOP', list)
    rotate(KEYS[2], head[1], redis.call('LLEN', list) == 0)
    keep(job_id, head[1], priority, '')
  end
end
return taken
"""

# Up to ARGV[2] delayed entries due by ARGV[1] (ms), taken out of the delayed and waiting sets (they
# are about to be arq jobs). KEYS: delayed, waiting. ARGV: now, count, separator.
DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, entry in ipairs(due) do
  redis.call('ZREM', KEYS[1], entry)
  local first = string.find(entry, ARGV[3], 1, true)
  local job_id = string.sub(entry, string.find(entry, ARGV[3], first + 1, true) + 1)
  redis.call('SREM', KEYS[2], job_id)
end
return due
"""
