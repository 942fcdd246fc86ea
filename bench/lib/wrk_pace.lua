-- Appended to wrk_pool.lua for a rate-limited run: interval_ms and now_ms come from there.
-- Called before every request when defined: wait for this thread's next slot (open schedule, no burst
-- catch-up beyond one second of debt).
function delay()
  if interval_ms == 0 then return 0 end
  local t = now_ms()
  if next_slot == nil or next_slot < t - 1000 then next_slot = t end
  local wait = next_slot - t
  next_slot = next_slot + interval_ms
  if wait < 0 then return 0 end
  return math.floor(wait)
end

