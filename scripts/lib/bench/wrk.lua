-- wrk script of scripts/bench.sh. Environment:
--   TW_WRK_MODE     none | same (the first token of TW_WRK_TOKENS on every request)
--                   | cycle (token i on request i, round the list) | once (cycle, stopping once
--                   every token of the list has been answered)
--   TW_WRK_TOKENS   a file of tokens, one per line
--   TW_WRK_HEADERS  more request headers, "Name: value|Name: value"
--   TW_WRK_DONE     with "once": a file created when every token has been answered (wrk's main
--                   thread waits out -d whatever its threads do: send it SIGINT then)
-- "same" and "none" keep wrk's one pre-built request; "cycle" builds each from a prefix and a
-- suffix around the token (one string concatenation).
local mode = os.getenv("TW_WRK_MODE") or "none"
local file = os.getenv("TW_WRK_TOKENS")
local extra = os.getenv("TW_WRK_HEADERS") or ""
local done_file = os.getenv("TW_WRK_DONE")
local tokens, n, i, answered = {}, 0, 0, 0
local prefix, suffix = "", ""

function init(args)
  for h in string.gmatch(extra, "[^|]+") do
    local name, value = h:match("^%s*([^:]+):%s*(.-)%s*$")
    wrk.headers[name] = value
  end
  if mode == "same" then
    local f = assert(io.open(file, "r"))
    wrk.headers["Authorization"] = "Bearer " .. f:read("*l")
    f:close()
  elseif mode == "cycle" or mode == "once" then
    for line in io.lines(file) do
      if #line > 0 then
        n = n + 1
        tokens[n] = line
      end
    end
    local hs = {}
    for k, v in pairs(wrk.headers) do
      hs[#hs + 1] = k .. ": " .. v .. "\r\n"
    end
    prefix = wrk.method .. " " .. wrk.path .. " HTTP/1.1\r\n" .. table.concat(hs) .. "Authorization: Bearer "
    suffix = "\r\n\r\n"
  end
end

if mode == "cycle" or mode == "once" then
  function request()
    i = i % n + 1
    return prefix .. tokens[i] .. suffix
  end
end

if mode == "once" then
  -- At most 32 requests are in flight: every token has been answered past n + 64 answers.
  function response(status, headers, body)
    answered = answered + 1
    if answered == n + 64 then
      if done_file then
        local f = io.open(done_file, "w")
        if f then f:close() end
      end
      wrk.thread:stop()
    end
  end
end
