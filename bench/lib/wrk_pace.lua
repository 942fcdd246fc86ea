-- Appended to wrk_pool.lua for a rate-limited run; bench/lib/wrk.ts gives each connection a thread, and so a
-- schedule, of its own. interval_ms, now_ms and read_pool come from wrk_pool.lua.
--
-- Latency is counted from each request's slot in the schedule. When the server stalls, the requests due
-- meanwhile wait for their connection, and counted from their write they would look fast (coordinated
-- omission). wrk makes up for that only roughly, after the run: for each slow response it adds made-up samples
-- at one-interval steps below it, the interval being the run's time ÷ requests per connection, which can miss
-- waits or invent them. Counted from the slot, each request's wait is measured, as pgbench -R measures its own
-- (per client, schedule lag included; its intervals are random, ours fixed). wrk's figures stay in
-- BENCH_JSON; each thread's latencies from the schedule follow as a BENCH_SLOT_US line, then BENCH_PACED (see
-- done()).
--
-- wrk runs each thread's init() before starting it, one after the other, so threads that each read the whole
-- pool (hundreds of MB) would keep the later ones waiting while the earlier ones already send. Here the pool
-- is read once, by the main state (wrk.ts writes paced_pool_file and paced_threads at the top of the script),
-- and each thread gets its share: entries k, k + n, k + 2n, … as the threads interleave otherwise.
local paced_threads_seen = {}
local pool_setup = setup
local whole_pool = nil
local epoch = nil
function setup(thread)
  pool_setup(thread)
  local k = #paced_threads_seen
  paced_threads_seen[k + 1] = thread
  if whole_pool == nil then
    whole_pool = read_pool(paced_pool_file)
    -- One origin for every connection's schedule (CLOCK_MONOTONIC is shared by the threads).
    epoch = now_ms()
  end
  assert(#whole_pool > 0, "the pool file holds no requests")
  -- (A pool smaller than the thread count is shared round, so that no thread is left without requests.)
  local share = {}
  for j = k, math.max(#whole_pool, paced_threads) - 1, paced_threads do
    share[#share + 1] = whole_pool[(j % #whole_pool) + 1]
  end
  thread:set("pool_share", share)
  thread:set("schedule_epoch_ms", epoch)
  if k + 1 == paced_threads then
    whole_pool = nil
    collectgarbage()
  end
end

slot_latencies_us = {}
slot_times_ms = {}
local current_slot = nil
local written_at = nil

-- Called before every request when defined: wait for this connection's next slot (open schedule, no burst
-- catch-up beyond one second of debt).
function delay()
  local t = now_ms()
  if next_slot == nil or next_slot < t - 1000 then
    -- This connection's slots: the common origin, offset by its share of the interval so that together the
    -- connections send evenly (not in bursts of one each), then whole intervals; it starts (or, over a second
    -- behind, resumes) at its first slot not yet past.
    local origin = schedule_epoch_ms + interval_ms * (thread_index or 0) / paced_threads
    next_slot = origin + math.ceil((t - origin) / interval_ms) * interval_ms
  end
  current_slot = next_slot
  local wait = next_slot - t
  next_slot = next_slot + interval_ms
  if wait < 0 then return 0 end
  return math.floor(wait)
end

local pool_request = request
function request()
  written_at = now_ms()
  return pool_request()
end

-- wrk's timer works in whole milliseconds, so a request can go out just before its slot: count from the
-- earlier of the two.
function response(status, headers, body)
  if current_slot == nil then return end
  local from = math.min(current_slot, written_at)
  slot_latencies_us[#slot_latencies_us + 1] = math.floor((now_ms() - from) * 1000 + 0.5)
  slot_times_ms[#slot_times_ms + 1] = current_slot
end

-- Only the requests scheduled within wrk's measured time count: wrk starts each thread as soon as it is set
-- up, before its clock starts, so its own count includes what the first threads sent meanwhile and overstates
-- the rate. BENCH_PACED gives the window's request count.
local pool_done = done
function done(summary, latency, requests)
  pool_done(summary, latency, requests)
  local window_start = now_ms() - summary.duration / 1000
  local in_window = 0
  for _, thread in ipairs(paced_threads_seen) do
    local latencies, slots, kept = thread:get("slot_latencies_us"), thread:get("slot_times_ms"), {}
    for i = 1, #latencies do
      if slots[i] >= window_start then kept[#kept + 1] = latencies[i] end
    end
    in_window = in_window + #kept
    io.write("BENCH_SLOT_US " .. table.concat(kept, ",") .. "\n")
  end
  io.write(string.format('BENCH_PACED {"requests":%d}\n', in_window))
end
