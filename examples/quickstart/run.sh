#!/usr/bin/env bash
# Quickstart: builds Serval, starts two echo backends (127.0.0.1:3001 and :3002) and runs
# `serval-control-plane standalone` on this folder. Ctrl-C stops everything.
#   curl -s -H 'Host: echo.example' http://127.0.0.1:8080/v1/hello
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cargo build --release --quiet -p serval-control-plane -p serval-e2e --bin serval-control-plane --bin serval-echo
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
target/release/serval-echo --listen 127.0.0.1:3001 --service echo-v1 --pod echo-v1-pod & pids+=($!)
target/release/serval-echo --listen 127.0.0.1:3002 --service echo-v2 --pod echo-v2-pod & pids+=($!)
target/release/serval-control-plane standalone --config-dir "$here" "$@" & pids+=($!)
wait "${pids[-1]}"
