#!/usr/bin/env bash
# Serval's proxy vs nginx as a reverse proxy, side by side on one machine, same backend, same load.
#
#   cargo build --release --workspace --bins && e2e/bench/proxy_vs_nginx.sh [ROUNDS] [SECONDS]
#
# Needs wrk and nginx (apt-get install wrk nginx). The backend is an nginx `return 200` on loopback,
# so the proxies are what is measured. Each round runs wrk against Serval, then against nginx;
# the report gives the median of the rounds for each and their ratio. With ACCESS_LOG=1 a second
# Serval with its access log on (JSON lines to a file) runs in the same rounds, for the log's cost.
# With BASELINE=/path/to/serval-control-plane (another build, e.g. of an earlier commit) that
# build runs in the same rounds too, for the cost of a change. With TRACING=1 two more Servals
# export traces to a counting OTLP receiver (target/release/serval-otlp-sink), sampling 1% and
# 100% of requests, for the cost of tracing. Each Serval's CPU time per request (user + system of
# its process, which also holds an idle control plane) is reported next to its throughput.
# Everything it starts is stopped on exit.
set -euo pipefail
rounds=${1:-5}
seconds=${2:-8}
connections=${CONNECTIONS:-32}
root="$(cd "$(dirname "$0")/../.." && pwd)"
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend_port=$(free_port); nginx_port=$(free_port); serval_port=$(free_port)
xds_port=$(free_port); admin_port=$(free_port)

nginx_conf() { # name, workers, server block
  mkdir -p "$work/$1"
  cat > "$work/$1/nginx.conf" <<CONF
daemon off;
worker_processes $2;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/$1/body; proxy_temp_path $work/$1/proxy;
  fastcgi_temp_path $work/$1/fcgi; uwsgi_temp_path $work/$1/uwsgi; scgi_temp_path $work/$1/scgi;
  $3
}
CONF
  nginx -p "$work/$1" -c "$work/$1/nginx.conf" & pids+=($!)
}

nginx_conf backend 1 "server { listen 127.0.0.1:$backend_port; location / { return 200 'ok'; } }"
nginx_conf proxy auto "upstream b { server 127.0.0.1:$backend_port; keepalive 64; }
  server { listen 127.0.0.1:$nginx_port; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } }"

serval_config() { # dir, gateway port
  mkdir -p "$1"
  cat > "$1/config.yaml" <<YAML
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: serval}
spec: {controllerName: serval.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: default}
spec:
  gatewayClassName: serval
  addresses: [{type: IPAddress, value: 127.0.0.1}]
  listeners: [{name: http, protocol: HTTP, port: $2}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench, namespace: default}
spec:
  parentRefs: [{name: bench}]
  rules: [{backendRefs: [{name: backend, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend-1, namespace: default, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{name: http, port: $backend_port, protocol: TCP}]
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]
YAML
}
serval_config "$work/serval" "$serval_port"
# Access logs off on both sides (nginx: `access_log off` above).
SERVAL_LOG=warn "$root/target/release/serval-control-plane" standalone --config-dir "$work/serval" \
  --xds-addr "127.0.0.1:$xds_port" --admin-addr "127.0.0.1:$admin_port" --access-log off & pids+=($!)
contenders=(serval nginx)
declare -A port_of=([serval]=$serval_port [nginx]=$nginx_port)
declare -A pid_of=([serval]=$!)
# Another Serval contender: name, binary, extra arguments.
serval_contender() {
  local name=$1 bin=$2; shift 2
  local port; port=$(free_port)
  serval_config "$work/$name" "$port"
  SERVAL_LOG=warn "$bin" standalone --config-dir "$work/$name" \
    --xds-addr "127.0.0.1:$(free_port)" --admin-addr "127.0.0.1:$(free_port)" "$@" & pids+=($!)
  pid_of[$name]=$!
  contenders+=("$name")
  port_of[$name]=$port
}
if [ -n "${TRACING:-}" ]; then
  sink_port=$(free_port)
  "$root/target/release/serval-otlp-sink" --listen "127.0.0.1:$sink_port" 2> "$work/sink.log" & pids+=($!)
  for pct in 1 100; do
    OTEL_BSP_SCHEDULE_DELAY=1000 serval_contender "trace$pct" "$root/target/release/serval-control-plane" \
      --access-log off --otlp-endpoint "http://127.0.0.1:$sink_port" \
      --trace-sampling "$(awk -v p=$pct 'BEGIN { print p / 100 }')"
  done
fi
if [ -n "${ACCESS_LOG:-}" ]; then
  serval_contender logged "$root/target/release/serval-control-plane" --access-log json > "$work/access.log"
fi

if [ -n "${BASELINE:-}" ]; then
  serval_contender baseline "$BASELINE" --access-log off
fi

for port in "${port_of[@]}" $backend_port; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$port/" || { echo "port $port does not answer" >&2; exit 1; }
done

run() { # port -> "req/s p50_ms p99_ms"
  wrk -t1 -c"$connections" -d"${seconds}s" --latency "http://127.0.0.1:$1/" | awk '
    /Requests\/sec/ { rps = $2 }
    /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
    /Non-2xx|Socket errors/ { errors = errors " " $0 }
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    END { printf "%s %.3f %.3f%s\n", rps, ms(p50), ms(p99), errors }'
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
echo "load: wrk -t1 -c$connections -d${seconds}s, HTTP/1.1 keep-alive, GET / -> nginx 'return 200' backend"
ticks() { # pid -> user + system clock ticks
  if [ -z "${1:-}" ]; then echo 0; return; fi
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)
printf '%-6s %-8s %12s %10s %10s %12s\n' round proxy req/s p50_ms p99_ms cpu_us/req
for name in "${contenders[@]}"; do : > "$work/$name.txt"; : > "$work/$name.cpu"; done
for r in $(seq "$rounds"); do
  for name in "${contenders[@]}"; do
    pid=${pid_of[$name]:-}
    t0=$(ticks "$pid")
    m=$(run "${port_of[$name]}"); echo "$m" >> "$work/$name.txt"
    t1=$(ticks "$pid")
    cpu=-
    if [ -n "$pid" ]; then
      cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v rps="${m%% *}" -v s="$seconds" 'BEGIN { printf "%.2f", d / hz * 1e6 / (rps * s) }')
      echo "$cpu" >> "$work/$name.cpu"
    fi
    printf '%-6s %-8s %12s %10s %10s %12s\n' "$r" "$name" ${m%% Non*} "$cpu"
  done
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for name in "${contenders[@]}"; do
  cpu=-
  [ -s "$work/$name.cpu" ] && cpu=$(median < "$work/$name.cpu")
  printf 'median %-8s req/s %s  p50 %s ms  p99 %s ms  cpu %s us/req\n' "$name" \
    "$(cut -d' ' -f1 "$work/$name.txt" | median)" "$(cut -d' ' -f2 "$work/$name.txt" | median)" "$(cut -d' ' -f3 "$work/$name.txt" | median)" "$cpu"
done
s=$(cut -d' ' -f1 "$work/serval.txt" | median); n=$(cut -d' ' -f1 "$work/nginx.txt" | median)
echo "ratio serval/nginx req/s: $(awk -v s="$s" -v n="$n" 'BEGIN { printf "%.2f", s / n }')"
if [ -n "${ACCESS_LOG:-}" ]; then
  l=$(cut -d' ' -f1 "$work/logged.txt" | median)
  echo "ratio serval with access log / without req/s: $(awk -v l="$l" -v s="$s" 'BEGIN { printf "%.2f", l / s }')"
  echo "access-log lines written: $(wc -l < "$work/access.log")"
fi
if [ -n "${TRACING:-}" ]; then
  c0=$(median < "$work/serval.cpu")
  for pct in 1 100; do
    c=$(median < "$work/trace$pct.cpu")
    echo "tracing at $pct%: cpu per request $(awk -v c="$c" -v c0="$c0" 'BEGIN { printf "%+.1f%%", (c / c0 - 1) * 100 }') vs off, req/s ratio $(awk -v t="$(cut -d' ' -f1 "$work/trace$pct.txt" | median)" -v s="$s" 'BEGIN { printf "%.2f", t / s }')"
  done
  echo "spans received by the sink: $(tail -1 "$work/sink.log")"
fi
if [ -n "${BASELINE:-}" ]; then
  b=$(cut -d' ' -f1 "$work/baseline.txt" | median)
  echo "ratio serval / baseline ($BASELINE) req/s: $(awk -v s="$s" -v b="$b" 'BEGIN { printf "%.2f", s / b }')"
fi
