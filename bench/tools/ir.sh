#!/bin/bash
# Instructions per proxied request, deterministic (callgrind counts instructions, not time):
#   bench/tools/ir.sh CONFIG [PATH]   e.g. bench/tools/ir.sh bench/tools/real.yaml /api/catalog/items/42
# Runs bench/tools/inproc.py (the data plane on fake transports, no sockets) under callgrind with
# 0 and 1500 requests and prints the difference per request.
CFG=$1
REQPATH=${2:-/api/orders/7}
PY=${PYTHON:-/work/venv/bin/python}
run() {
  valgrind --tool=callgrind --callgrind-out-file=/tmp/strangler-cg.out \
    "$PY" "$(dirname "$0")"/inproc.py "$CFG" x "$1" "$REQPATH" 2>&1 \
    | grep -o "Collected : [0-9]*" | awk '{print $3}'
}
A=$(run 0); B=$(run 1500)
python3 -c "print('$CFG $REQPATH instructions/request:', round(($B-$A)/1500))"
