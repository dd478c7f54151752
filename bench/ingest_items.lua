-- wrk script: POST D1 notification bodies of N new card orders each (N = first script argument).
-- Every item is a new card, so each one costs an order upsert, an event insert and a fold.
-- With "copies" as the fourth argument every POST carries the same one item: D1 retrying a
-- stored item (the storm of copies).
-- With a bearer token (third argument) the requests look as they do behind the mTLS proxy in
-- production: the token, and the verified certificate subject the proxy forwards.
-- A fifth argument paces each connection: that many milliseconds before each request (a steady
-- rate, as at a peak, rather than as fast as the server answers).
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  batch = tonumber(args[1]) or 1
  nonce = args[2] or "run"
  counter = 0
  copies = args[4] == "copies"
  pause = tonumber(args[5]) or 0
  headers = {["Content-Type"] = "application/json"}
  if args[3] then
    headers["Authorization"] = "Bearer " .. args[3]
    headers["X-SSL-Client-S-DN"] = "CN=bench-d1-client"
  end
end

function delay()
  return pause
end

function request()
  counter = counter + 1
  local ops = {}
  for i = 1, batch do
    local card = string.format("%s-%d-%d-%d", nonce, tid, counter, i)
    if copies then
      card = nonce .. "-storm"
    end
    ops[i] = string.format(
      '{"operationId":"op-%s","operation":"PRODUCE","status":"PENDING",' ..
      '"startTime":"2026-03-02T09:15:04.120Z","cardId":"%s","issuerRequestId":"req-%s",' ..
      '"details":{"status":"CARD_PROD_REQUESTED"}}', card, card, card)
  end
  local body = '{"operations":[' .. table.concat(ops, ",") .. ']}'
  return wrk.format("POST", nil, headers, body)
end
