-- Replace a record only if its stored version is the one the caller read, then announce it.
-- The value is written by aauth_server.storage.redis with "v" and "exp" first, so the version and
-- expiry are read as text: re-encoding the data through cjson would alter numbers and empty arrays.
-- KEYS[1] record key
-- ARGV[1] expected version   ARGV[2] new data (JSON)   ARGV[3] new expiry or "" to keep
-- ARGV[4] new TTL in ms or "" to keep   ARGV[5] change channel   ARGV[6] "kind:id"
-- Returns {1, value} | {0, stored version} | {-1} when the record is gone.
local current = redis.call('GET', KEYS[1])
if not current then
  return {-1}
end
local stored, exp = string.match(current, '^{"v":(%d+),"exp":([^,]+),"data":')
if not stored then
  return redis.error_reply('aauth: malformed record at ' .. KEYS[1])
end
if tonumber(stored) ~= tonumber(ARGV[1]) then
  return {0, tonumber(stored)}
end
local version = string.format('%d', tonumber(stored) + 1)
local value
if ARGV[3] == '' then
  value = '{"v":' .. version .. ',"exp":' .. exp .. ',"data":' .. ARGV[2] .. '}'
  redis.call('SET', KEYS[1], value, 'KEEPTTL')
else
  value = '{"v":' .. version .. ',"exp":' .. ARGV[3] .. ',"data":' .. ARGV[2] .. '}'
  redis.call('SET', KEYS[1], value, 'PX', ARGV[4])
end
redis.call('PUBLISH', ARGV[5], ARGV[6] .. ':' .. version)
return {1, value}
