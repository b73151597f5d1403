-- Add to a counter and start its window on first use, in one step, so parallel callers
-- (wrong interaction codes on several workers) can never both read the same count.
-- KEYS[1] counter key   ARGV[1] amount   ARGV[2] window in ms
-- Returns the new value; the window is fixed from the first increment.
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
