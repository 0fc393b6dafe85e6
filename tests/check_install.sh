#!/usr/bin/env bash
# `make check-install`: what a new user does with the wheel, nothing borrowed from this repository.
# Builds the wheel from the files it is made of, installs it with its server extra into a fresh
# virtualenv in a temporary directory, runs `zeroserve up --demo` from an empty directory there, and
# calls the demo as `zeroserve up` prints (a token from `zeroserve token`, curl); then Ctrl-C.
# Needs the package index (the dependencies); leaves nothing behind. PYTHON picks the interpreter.
set -euo pipefail

PYTHON=${PYTHON:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/zeroserve-check-install.XXXXXX")
up=""
cleanup() {
    if [ -n "$up" ] && kill -0 "$up" 2>/dev/null; then
        kill -INT "$up" 2>/dev/null || true
        sleep 10
        kill -KILL -- "-$up" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
started=$(date +%s)
step() { echo "[$(( $(date +%s) - started )) s] $*"; }

step "building the wheel"
mkdir "$work/source"
cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/LICENSE" "$repo/zeroserve" "$work/source/"
find "$work/source" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m venv "$work/venv"
bin="$work/venv/bin"
"$bin/pip" wheel --quiet --no-deps --wheel-dir "$work/dist" "$work/source"
wheel=$(ls "$work"/dist/zeroserve-*.whl)

step "pip install '$(basename "$wheel")[server]' into a fresh virtualenv"
"$bin/pip" install --quiet "$wheel[server]"
echo "    $("$bin/pip" list 2>/dev/null | tail -n +3 | wc -l) packages, $(du -sm "$work/venv" | cut -f1) MB"

mkdir "$work/empty"
cd "$work/empty"
"$bin/zeroserve" --version
# `zeroserve up` writes its profile here, not into the real home.
export XDG_CONFIG_HOME="$work/config"

step "zeroserve up --demo in an empty directory"
# Port 0: any free port (on a shared machine 8700 may be taken); the printed URLs name the real one.
ZEROSERVE_GATEWAY_PORT=0 setsid "$bin/zeroserve" up --demo > "$work/up.log" 2>&1 &
up=$!
for _ in $(seq 1800); do
    grep -q -- "-d '" "$work/up.log" && break
    kill -0 "$up" 2>/dev/null || { cat "$work/up.log"; echo "zeroserve up exited"; exit 1; }
    sleep 0.1
done
grep -q "Deployment iris is RUNNING" "$work/up.log" || { cat "$work/up.log"; echo "the demo is not RUNNING"; exit 1; }
url=$(grep -o 'curl -si -X POST [^ ]*' "$work/up.log" | cut -d' ' -f5)

step "calling the demo: $url"
TOKEN=$("$bin/zeroserve" token)
curl -sf -X POST "$url" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'
echo
step "from another directory, through the profile zeroserve up wrote: zeroserve deployments -o json"
(cd / && "$bin/zeroserve" deployments -o json) | tee "$work/deployments.json" | grep -q '"id": "iris"'

kill -INT "$up"
wait "$up"
up=""
step "check-install passed"
