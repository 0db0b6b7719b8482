-- wrk script: POST one-unit reservations of one hot SKU and count outcomes.
-- Usage: wrk -t2 -c256 -d10s -s bench/reserve.lua -H "Authorization: Bearer KEY" URL/v1/reservations
-- with env RESERVE_BODY holding the JSON request body.
wrk.method = "POST"
wrk.body = os.getenv("RESERVE_BODY")
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  created = 0
  refused = 0
  other = 0
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  elseif status == 409 then
    refused = refused + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local c, r, o = 0, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    r = r + t:get("refused")
    o = o + t:get("other")
  end
  local seconds = summary.duration / 1e6
  io.write(string.format("created %d (%.0f/s)  refused %d (%.0f/s)  other %d\n", c, c / seconds, r, r / seconds, o))
  io.write(string.format("latency p50 %.2f ms  p99 %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
