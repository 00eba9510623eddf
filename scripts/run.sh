#!/usr/bin/env bash
# Installs dependencies, builds, starts parleyd on its embedded defaults
# (RocksDB in ./var/parley, TLS with a generated local CA, 127.0.0.1:7443),
# runs the demo against it, then keeps serving until Ctrl-C.
# PARLEY_NO_SERVE=1: stop after the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
B="${PARLEY_BUILD_DIR:-build}"
mkdir -p var
./"$B"/core/parleyd --data-dir ./var/parley --listen 127.0.0.1:7443 2>>var/parleyd.log &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  [ -f var/parley/tls/ca.pem ] && (exec 3<>/dev/tcp/127.0.0.1/7443) 2>/dev/null && break
  kill -0 $PID 2>/dev/null || { echo "parleyd failed to start; see var/parleyd.log" >&2; tail -n 5 var/parleyd.log >&2; exit 1; }
  sleep 0.1
done
echo "parleyd is running (pid $PID) on 127.0.0.1:7443; log: var/parleyd.log; CA: var/parley/tls/ca.pem"
./tools/demo.sh "$B" 127.0.0.1:7443 var/parley/tls/ca.pem
if [ "${PARLEY_NO_SERVE:-0}" = "1" ]; then exit 0; fi
echo "parleyd keeps serving; press Ctrl-C to stop it."
wait $PID
