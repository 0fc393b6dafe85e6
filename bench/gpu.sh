#!/usr/bin/env bash
# Zero -> first token of a causal LM of about 1B parameters on an NVIDIA GPU, through zeroserve with
# a GPU plan, next to a fresh process that does from_pretrained(...).to("cuda") and one token; and
# streamed tokens per second, gateway next to direct (bench/gpu.py says what and how). Under 8
# minutes on one GPU; writes bench/gpu-results.json.
#
#   bench/gpu.sh            on the GPU machine (Python 3.12 with torch and transformers, no network)
#   bench/gpu.sh --tiny     the same steps with a tiny LM on the CPU: how it is tested without a GPU
#
# What the machine's Python lacks of zeroserve's dependencies comes from bench/gpu-wheels, made
# beforehand where the package index is reachable: `make gpu-wheels` (about 60 MiB, CPython 3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
NEEDS="import kserve, nats, fastapi, uvicorn, httptools, uvloop, openai, accelerate, jwt, standardwebhooks
from zeroserve.core.nats_server import nats_server_binary; nats_server_binary()"
if ! PYTHONPATH="$PWD" "$PY" -c "$NEEDS" 2>/dev/null; then
    [ -d bench/gpu-wheels ] || { echo "zeroserve's dependencies are missing and bench/gpu-wheels is not here: run make gpu-wheels" >&2; exit 2; }
    VENV="${TMPDIR:-/tmp}/zeroserve-gpu-venv"
    "$PY" -m venv --system-site-packages "$VENV"
    "$VENV/bin/pip" install --quiet --no-index --no-deps --find-links bench/gpu-wheels -r bench/gpu-wheels/requirements.txt
    PY="$VENV/bin/python"
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "$PY" -m bench.gpu "$@"
