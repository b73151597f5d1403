-- Read and delete a record in one step, so exactly one caller across all workers gets it.
-- KEYS[1] record key   ARGV[1] change channel   ARGV[2] "kind:id"
-- Version 0 in the announcement means the record is gone.
local current = redis.call('GET', KEYS[1])
if current then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[1], ARGV[2] .. ':0')
end
return current
