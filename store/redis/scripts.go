package redis

import goredis "github.com/redis/go-redis/v9"

// The server-side scripts. Each touches the keys of one torrent and of its
// bucket only, all declared in KEYS and all in one hash slot (see keys.go):
//
//	KEYS[1] t   bucket hash: info hash -> downloaded, for every torrent with
//	            peers or a download
//	KEYS[2] d   bucket sorted set: info hash -> a lower bound of the lowest
//	            score in its sets, for every torrent with peers
//	KEYS[3] n   bucket hash: s, l, t = stored seeders, leechers, torrents;
//	            s6, l6 = of s and l, the IPv6 ones
//	KEYS[4] s4  torrent sorted set: IPv4 seeders, addr -> score
//	KEYS[5] l4  IPv4 leechers
//	KEYS[6] s6  IPv6 seeders
//	KEYS[7] l6  IPv6 leechers
//	KEYS[8] p   torrent hash: addr -> peer id (with store.Options.PeerIDs only)
//
// addr is the peer's address as stored: 4 or 16 bytes of IP, then the port,
// big-endian. A peer's score is 2*expiry (ms since the epoch), plus 1 once
// its session's completed event has been counted: all a peer needs besides
// its id, so that without ids a peer costs one sorted-set entry. A peer is
// expired when its score is at or below the cut, 2*now+1, which the caller
// computes from its clock and passes in (never the server's TIME), so that
// all instances and the conformance suite's fake clock agree. Scores stay
// below 2^53, so doubles hold them exactly.

// luaCommon holds what the scripts share. expire removes at most LIMIT
// expired peers from each sorted set per call, so that no call blocks Redis
// for long however many peers expired at once (a swarm of 100,000 that
// nobody announced to for a lifetime): the rest are left for the next call,
// and until then counted out with ZCOUNT and filtered out of the peers
// returned.
const luaCommon = `
local T, D, N, P = KEYS[1], KEYS[2], KEYS[3], KEYS[8]
local SETS = {KEYS[4], KEYS[5], KEYS[6], KEYS[7]}
local LIMIT = 1000
local SMALL, WINDOWS = 128, 4

-- set i holds seeders when i is odd.
local function isSeeders(i) return i % 2 == 1 end

-- expire removes up to LIMIT peers expired at cut from each set, and their
-- ids, sets lingering[i] for each set that still holds expired peers, and
-- subtracts the peers removed from each set from d[i].
local function expire(cut, lingering, d)
  local removed = 0
  for i = 1, 4 do
    local k = SETS[i]
    local gone = redis.call('ZRANGE', k, '-inf', cut, 'BYSCORE', 'LIMIT', 0, LIMIT)
    local n = #gone
    if n > 0 then
      -- the n lowest scores are exactly the members just read
      redis.call('ZREMRANGEBYRANK', k, 0, n - 1)
      for j = 1, n, 500 do
        redis.call('HDEL', P, unpack(gone, j, math.min(j + 499, n)))
      end
      d[i] = d[i] - n
      removed = removed + n
      if n == LIMIT and redis.call('ZCOUNT', k, '-inf', cut) > 0 then
        lingering[i] = true
      end
    end
  end
  return removed
end

-- sizes returns the number of peers stored in each set.
local function sizes()
  local zc = {}
  for i = 1, 4 do zc[i] = redis.call('ZCARD', SETS[i]) end
  return zc
end

-- alive returns how many peers of set i are alive at cut, given its size.
local function alive(i, cut, lingering, size)
  if lingering[i] then
    return redis.call('ZCOUNT', SETS[i], string.format('(%.17g', cut), '+inf')
  end
  return size
end

-- lowest returns the lowest score in any set, nil if none.
local function lowest()
  local m
  for i = 1, 4 do
    local f = redis.call('ZRANGE', SETS[i], 0, 0, 'WITHSCORES')
    if f[2] then
      local sc = tonumber(f[2])
      if not m or sc < m then m = sc end
    end
  end
  return m
end

-- settle brings the bucket's keys up to date after the torrent h changed:
-- had says whether it had peers before, zc are its sets' sizes now, d the
-- changes of each set's size (s4, l4, s6, l6), due its old entry in
-- D (nil if none), score the score just stored (nil if none), exact
-- whether to recompute D's entry from the sets (after an expiry) rather
-- than keep a lower bound, and dl its download count.
local function settle(h, had, zc, d, due, score, exact, dl)
  local stored = zc[1] + zc[2] + zc[3] + zc[4]
  local dT = 0
  if stored == 0 then
    if had then
      dT = -1
      redis.call('ZREM', D, h)
    end
    if dl == 0 then redis.call('HDEL', T, h) end
  else
    if not had then
      dT = 1
      redis.call('HSETNX', T, h, 0)
    end
    if exact then
      redis.call('ZADD', D, lowest(), h)
    elseif score and (not due or score < due) then
      -- D keeps a lower bound: a later score leaves it be, an earlier
      -- one (another instance's clock behind ours) lowers it.
      redis.call('ZADD', D, score, h)
    end
  end
  local dS, dL = d[1] + d[3], d[2] + d[4]
  if dS ~= 0 then redis.call('HINCRBY', N, 's', dS) end
  if dL ~= 0 then redis.call('HINCRBY', N, 'l', dL) end
  if d[3] ~= 0 then redis.call('HINCRBY', N, 's6', d[3]) end
  if d[4] ~= 0 then redis.call('HINCRBY', N, 'l6', d[4]) end
  if dT ~= 0 then redis.call('HINCRBY', N, 't', dT) end
end

local function downloaded(h)
  return tonumber(redis.call('HGET', T, h) or '0')
end
`

// announceScript applies one announce. ARGV[1] is one binary string:
//
//	info hash (20) | peer id (20) | event (1) | seeder (1) | family (1) |
//	keep ids (1) | numwant (2) | cut (double, 8) | score (double, 8) |
//	random seed (4) | addr
//
// all big-endian; score is 2*expiry, without the completed bit. It returns
// {seeders, leechers, downloaded, v4, v6, ids}: the counts alive after the
// announce, and the peers chosen: their IPv4 addrs end to end (6 bytes
// each), their IPv6 addrs (18 bytes each), and with keep ids their ids in
// that order (20 bytes each, zeros if unknown), else "".
//
// The peers are chosen at random. How many come from each candidate set
// (IPv4 and IPv6 seeders and leechers) is in proportion to its size, within
// one, as in the memory store. A small set (up to 128, Redis's listpack)
// gives them by ZRANDMEMBER, a uniform choice. A bigger one, where
// ZRANDMEMBER costs over a microsecond a peer, gives windows of
// consecutive ranks, much as the memory store picks: the set seen as a
// ring turned by a random offset, cut into 4 strata, a window at a random
// place in each. Every peer is as likely to be chosen as any other, no
// peer comes twice, and the work is O(numwant + log n) whatever the
// swarm's size; peers close in rank (in expiry, so in the time of their
// last announce) tend to come together, which does not matter to a
// BitTorrent client. Expired peers left over (after a mass expiry one call
// could not clear) have the lowest ranks and are skipped.
const announceScript = luaCommon + `
local a = ARGV[1]
local h = string.sub(a, 1, 20)
local id = string.sub(a, 21, 40)
local event, seederByte, fam, ids, want, cut, score, seed, pos = struct.unpack('>BBBBHddI4', a, 41)
local addr = string.sub(a, pos)
local seeder = seederByte == 1
local STOPPED, COMPLETED = 3, 2
math.randomseed(seed)

local due = redis.call('ZSCORE', D, h)
local had = due ~= false
local lingering = {false, false, false, false}
local d, expired = {0, 0, 0, 0}, false
if had then
  due = tonumber(due)
  if due <= cut then
    expire(cut, lingering, d)
    expired = true
  end
else
  due = nil
end

-- The peer's sets: seeders at sk, leechers at sk + 1.
local sk = 1
if #addr == 18 then sk = 3 end
local mine = sk + 1
if seeder then mine = sk end
local was, old = sk, redis.call('ZSCORE', SETS[sk], addr)
if not old then
  was, old = sk + 1, redis.call('ZSCORE', SETS[sk + 1], addr)
end
if old then
  old = tonumber(old)
  if old <= cut then
    -- expired, not yet removed (lingering): this is a new session
    redis.call('ZREM', SETS[was], addr)
    redis.call('HDEL', P, addr)
    d[was] = d[was] - 1
    old = nil
  end
end
if not old then was = nil end

local dl = downloaded(h)
local stored = nil
if event == STOPPED then
  if was then
    redis.call('ZREM', SETS[was], addr)
    redis.call('HDEL', P, addr)
    d[was] = d[was] - 1
  end
else
  local completed = old and old % 2 == 1
  if event == COMPLETED and not completed then
    completed = true
    dl = redis.call('HINCRBY', T, h, 1)
  end
  if completed then score = score + 1 end
  if was and was ~= mine then redis.call('ZREM', SETS[was], addr) end
  redis.call('ZADD', SETS[mine], score, addr)
  if was ~= mine then
    d[mine] = d[mine] + 1
    if was then d[was] = d[was] - 1 end
  end
  if ids == 1 then redis.call('HSET', P, addr, id) end
  stored = score
end
local zc = sizes()
settle(h, had, zc, d, due, stored, expired, dl)

local al = {}
for i = 1, 4 do al[i] = alive(i, cut, lingering, zc[i]) end
local out = {al[1] + al[3], al[2] + al[4], dl, '', '', ''}
if want == 0 then return out end

-- Candidates: a seeder gets leechers only; the family filter; never self.
local cand, total = {}, 0
for i = 1, 4 do
  local n = al[i]
  if event ~= STOPPED and i == mine then n = n - 1 end
  if n > 0 and not (seeder and isSeeders(i)) and not (fam == 1 and i > 2) and not (fam == 2 and i <= 2) then
    cand[#cand + 1] = {i, n, 0}
    total = total + n
  end
end
if total == 0 then return out end
-- How many each set gives: all when they are few enough; else, as the
-- memory store does, in proportion to their sizes within one, by
-- systematic sampling (the sets laid end to end, want points at a random
-- offset, total/want apart), which keeps every peer's chance the same.
if want >= total then
  for _, cs in ipairs(cand) do cs[3] = cs[2] end
elseif #cand == 1 then
  cand[1][3] = want
else
  local u, lo = math.random(), 0
  for _, cs in ipairs(cand) do
    local hi = lo + cs[2]
    cs[3] = math.ceil(hi * want / total - u) - math.ceil(lo * want / total - u)
    lo = hi
  end
end

-- pick returns c peers of set i chosen at random, never the requester,
-- never an expired one (those have the lowest scores: ranks [0, e) of the
-- set), as a list of lists of members.
local function pick(i, c)
  local k = SETS[i]
  local e = zc[i] - al[i]
  local selfIn = event ~= STOPPED and i == mine
  if zc[i] <= SMALL then
    -- ZRANDMEMBER: exact, and cheap on a small (listpack) set.
    local ask = c + e
    if selfIn then ask = ask + 1 end
    local got = {}
    if e == 0 then
      for _, m in ipairs(redis.call('ZRANDMEMBER', k, ask)) do
        if m ~= addr then got[#got + 1] = m end
      end
    else
      local r = redis.call('ZRANDMEMBER', k, ask, 'WITHSCORES')
      for j = 1, #r, 2 do
        if r[j] ~= addr and tonumber(r[j + 1]) > cut then got[#got + 1] = r[j] end
      end
    end
    while #got > c do
      local x = math.random(#got)
      got[x] = got[#got]
      got[#got] = nil
    end
    return {got}
  end
  -- A big set: windows of consecutive ranks, O(c + log n) in all. Ranks
  -- are counted from e and skip the requester's: virtual positions 0 to
  -- m-1.
  local m, sr = al[i], nil
  if selfIn then
    m = m - 1
    sr = redis.call('ZRANK', k, addr) - e
  end
  local chunks = {}
  local function fetch(a, len)
    if len <= 0 then return end
    local lo, hi = e + a, e + a + len - 1
    local r
    if sr and hi - e >= sr then
      if a >= sr then
        r = redis.call('ZRANGE', k, lo + 1, hi + 1)
      else
        r = redis.call('ZRANGE', k, lo, hi + 1)
        table.remove(r, sr - a + 1)
      end
    else
      r = redis.call('ZRANGE', k, lo, hi)
    end
    chunks[#chunks + 1] = r
  end
  if 2 * c > m then
    -- Most of the set (at most 2c): take it all, drop some at random.
    fetch(0, m)
    local got = chunks[1]
    while #got > c do
      local x = math.random(#got)
      got[x] = got[#got]
      got[#got] = nil
    end
    return chunks
  end
  -- Cut the ring of m positions, turned by a random offset, into w strata
  -- and take a window at a random place in each: no position twice, and
  -- each as likely as any other.
  local w = math.min(c, WINDOWS)
  local rot = math.random(m) - 1
  local q, qr = math.floor(m / w), m % w
  local l, lr = math.floor(c / w), c % w
  local start = 0
  for j = 0, w - 1 do
    local size, len = q, l
    if j < qr then size = size + 1 end
    if j < lr then len = len + 1 end
    local a = (rot + start + math.random(0, size - len)) % m
    if a + len <= m then
      fetch(a, len)
    else
      fetch(a, m - a)
      fetch(0, len - (m - a))
    end
    start = start + size
  end
  return chunks
end

-- The reply: IPv4 addrs (6 bytes each), IPv6 addrs (18), and with ids
-- the ids of both in that order (20 bytes each, zeros if unknown).
local blobs, all = {{}, {}}, {}
for _, cs in ipairs(cand) do
  if cs[3] > 0 then
    local fam6 = 1
    if cs[1] > 2 then fam6 = 2 end
    for _, chunk in ipairs(pick(cs[1], cs[3])) do
      local b = blobs[fam6]
      b[#b + 1] = table.concat(chunk)
      if ids == 1 then
        for _, mbr in ipairs(chunk) do all[#all + 1] = mbr end
      end
    end
  end
end
out[4] = table.concat(blobs[1])
out[5] = table.concat(blobs[2])
if ids == 1 and #all > 0 then
  -- v4 members first: order all likewise
  local v4, v6 = {}, {}
  for _, mbr in ipairs(all) do
    if #mbr == 6 then v4[#v4 + 1] = mbr else v6[#v6 + 1] = mbr end
  end
  for _, mbr in ipairs(v6) do v4[#v4 + 1] = mbr end
  local vals = redis.call('HMGET', P, unpack(v4))
  local zero = string.rep('\0', 20)
  for j = 1, #v4 do
    local v = vals[j]
    if not v or #v ~= 20 then vals[j] = zero end
  end
  out[6] = table.concat(vals)
end
return out
`

// expireScript is what the sweeper runs for a torrent whose entry in D is
// due: ARGV[1] is the info hash, ARGV[2] the cut. It removes expired peers
// (at most LIMIT per set), makes D's entry exact, and returns {peers
// removed, 1 if expired peers are left else 0}.
const expireScript = luaCommon + `
local h, cut = ARGV[1], tonumber(ARGV[2])
local due = redis.call('ZSCORE', D, h)
if not due or tonumber(due) > cut then return {0, 0} end
local lingering = {false, false, false, false}
local d = {0, 0, 0, 0}
local removed = expire(cut, lingering, d)
settle(h, true, sizes(), d, tonumber(due), nil, true, downloaded(h))
local left = 0
for i = 1, 4 do if lingering[i] then left = 1 end end
return {removed, left}
`

// leaseScript takes or renews the sweeper's lease: KEYS[1] the lease,
// ARGV[1] this instance's token, ARGV[2] the lease's time to live (ms).
// It returns 1 when this instance holds the lease.
const leaseScript = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`

// releaseScript gives the lease up if this instance (ARGV[1]) holds it.
const releaseScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`

// scripts are the compiled scripts. goredis.Script is safe for concurrent
// use and holds nothing but the source and its SHA-1, so one set serves
// every Store.
type scripts struct {
	announce, expire, lease, release *goredis.Script
}

func newScripts() scripts {
	return scripts{
		announce: goredis.NewScript(announceScript),
		expire:   goredis.NewScript(expireScript),
		lease:    goredis.NewScript(leaseScript),
		release:  goredis.NewScript(releaseScript),
	}
}
