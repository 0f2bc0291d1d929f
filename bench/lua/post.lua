-- wrk script: POST the same body (a file named after "--") on every request, and print
-- one JSON line with the figures at the end (marker "BENCH-RESULT ").
-- Usage: wrk -t1 -c8 -d10s -s bench/lua/post.lua URL -- body.json

local request_bytes

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  request_bytes = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function request()
  return request_bytes
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
