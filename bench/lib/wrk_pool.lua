-- Replays pre-signed raw requests from a file, in order, cycling. For a paced run, bench/lib/wrk.ts appends
-- wrk_pace.lua (wrk calls delay() before every request only when the script defines it).
-- Arguments (after --): <pool file> [requests per second for the whole run] [thread count]
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local thread_count = 0
function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

local pool = {}
local position = 0
local step = 1
local interval_ms = 0
local next_slot = nil

local function read_pool(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  local separator = "\0\0BENCH-REQUEST\0\0"
  local entries, pos = {}, 1
  while true do
    local s, e = string.find(data, separator, pos, true)
    if not s then break end
    entries[#entries + 1] = string.sub(data, pos, s - 1)
    pos = e + 1
  end
  return entries
end

function init(args)
  local threads = tonumber(args[3]) or 1
  local rate = tonumber(args[2]) or 0
  if rate > 0 then interval_ms = 1000 * threads / rate end
  if pool_share then
    -- A paced run: setup() handed this thread its share of the pool (wrk_pace.lua).
    pool = pool_share
    return
  end
  pool = read_pool(args[1])
  -- Threads interleave over the pool so that no two of them send the same entry at the same time.
  position = thread_index or 0
  step = threads
end

function request()
  local r = pool[(position % #pool) + 1]
  position = position + step
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p95":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
