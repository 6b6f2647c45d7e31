# The wrk part of the edge benchmarks (sourced by scripts/bench/edge.sh): three runs —
# a bot refused, a sold-out buy, a forwarded buy — against http://127.0.0.1:$edge_port, each
# request from a random client address, and a table plus the warehouse's Buy calls per phase.
# Needs: threads conns duration work edge_port metrics_port BUY_PATH BUY_TOKEN SOLDOUT_PATH
# SOLDOUT_TOKEN; the address header (and its format) are the platform's:
#   wrk_edge_bench cf-connecting-ip '10.%d.%d.%d'          (Cloudflare)
#   wrk_edge_bench spin-client-addr '10.%d.%d.%d:443'      (Spin)
wrk_edge_bench() {
export BENCH_ADDR_HEADER="$1" BENCH_ADDR_FORMAT="$2"
# One wrk Lua script for all three: method, path and headers from the environment, a random
# client address per request, and a tally of status codes.
cat >"$work/bench.lua" <<'LUA'
local path, token, bot = os.getenv("BENCH_PATH"), os.getenv("BENCH_TOKEN"), os.getenv("BENCH_BOT")
local addr_header, addr_format = os.getenv("BENCH_ADDR_HEADER"), os.getenv("BENCH_ADDR_FORMAT")
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  statuses = {}
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
function request()
  local headers = {
    [addr_header] = string.format(addr_format, math.random(0, 255), math.random(0, 255), math.random(1, 254)),
    ["content-type"] = "application/json",
  }
  if bot == "1" then
    headers["user-agent"] = "python-requests/2.32"
  else
    headers["user-agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/141.0 Safari/537.36"
    headers["accept-language"] = "zh-CN,zh;q=0.9"
    headers["sec-fetch-site"] = "same-origin"
    headers["sec-fetch-mode"] = "cors"
    headers["authorization"] = "Bearer " .. token
  end
  return wrk.format("POST", path, headers, "{}")
end
function response(status) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do total[status] = (total[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(total) do table.insert(parts, status .. "=" .. n) end
  io.write(string.format("statuses: %s\n", table.concat(parts, " ")))
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA

run() { # name path token bot
  say "wrk $1: $threads threads, $conns connections, $duration"
  BENCH_PATH="$2" BENCH_TOKEN="$3" BENCH_BOT="$4" \
    wrk -t"$threads" -c"$conns" -d"$duration" --latency -s "$work/bench.lua" "http://127.0.0.1:$edge_port" \
    | tee "$work/$1.out" | grep -E "Requests/sec|99%|statuses|RESULT"
}
buys_before=$(curl -s "http://127.0.0.1:$metrics_port/metrics" | awk '/^flashgate_requests_total\{.*method="Buy(Many)?"/ {s+=$2} END {print s+0}')
run bot "$BUY_PATH" "$BUY_TOKEN" 1
run soldout "$SOLDOUT_PATH" "$SOLDOUT_TOKEN" 0
buys_mid=$(curl -s "http://127.0.0.1:$metrics_port/metrics" | awk '/^flashgate_requests_total\{.*method="Buy(Many)?"/ {s+=$2} END {print s+0}')
run buy "$BUY_PATH" "$BUY_TOKEN" 0
buys_after=$(curl -s "http://127.0.0.1:$metrics_port/metrics" | awk '/^flashgate_requests_total\{.*method="Buy(Many)?"/ {s+=$2} END {print s+0}')

echo
printf '%-10s %10s %10s %10s\n' path req/s p50_ms p99_ms
for name in bot soldout buy; do
  line=$(grep RESULT "$work/$name.out" | sed 's/RESULT //')
  eval "$line"
  printf '%-10s %10s %10s %10s\n' "$name" "$rps" "$p50_ms" "$p99_ms"
done
echo "warehouse Buy and BuyMany calls: during bot+soldout $((buys_mid - buys_before)), during buy $((buys_after - buys_mid))"
}
