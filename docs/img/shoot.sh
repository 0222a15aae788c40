#!/bin/sh
# Regenerates the screenshots of docs/ui.md from a real `ferry demo --keep`:
# a job streaming under a bandwidth limit, a job whose replica was modified
# (its runs fail with Conflict) and a job whose target host has no worker
# (HostUnavailable). Needs Go, Debian's chromium (apt-get install chromium)
# and npm (playwright-core is installed into a temporary directory, never
# into the repository). Not part of `make test`: run `make ui-screenshots`.
#
# Environment: FERRY_UI_PORT (default 18433), FERRY_UI_FRONTEND (default
# 17433), CHROMIUM (default /usr/bin/chromium), KEEP=1 leaves the demo up.
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$repo/docs/img
ui_port=${FERRY_UI_PORT:-18433}
frontend_port=${FERRY_UI_FRONTEND:-17433}
chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "shoot.sh: $chromium not found: apt-get install -y chromium, or set CHROMIUM" >&2; exit 1; }
command -v npm >/dev/null || { echo "shoot.sh: npm not found: apt-get install -y npm" >&2; exit 1; }

work=$(mktemp -d /tmp/ferry-ui-shots.XXXXXX)
demo_pid=
cleanup() {
	if [ -n "$demo_pid" ] && [ "${KEEP:-}" != 1 ]; then
		kill -INT "$demo_pid" 2>/dev/null || true
		wait "$demo_pid" 2>/dev/null || true
	fi
	[ "${KEEP:-}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "building ferry and installing playwright-core into $work"
(cd "$repo" && GOTOOLCHAIN=local go build -o "$work/ferry" ./cmd/ferry)
npm install --silent --no-audit --no-fund --prefix "$work/pw" playwright-core@1.65.1 >/dev/null
ferry=$work/ferry

"$ferry" demo --keep --dir "$work/demo" --address "127.0.0.1:$frontend_port" --ui-address "127.0.0.1:$ui_port" --size 64MiB >"$work/demo.log" 2>&1 &
demo_pid=$!
i=0
until grep -q -- '--keep:' "$work/demo.log"; do
	i=$((i + 1))
	if [ $i -gt 300 ] || ! kill -0 "$demo_pid" 2>/dev/null; then
		cat "$work/demo.log" >&2
		echo "shoot.sh: ferry demo did not come up" >&2
		exit 1
	fi
	sleep 1
done
ui=$(sed -n 's/^  web UI *//p' "$work/demo.log")
echo "demo up, web UI $ui"

# Three more jobs beside the demo's share01: photos (incompressible data,
# 2 MiB/s: a stream to watch), docs (a replica modified on the target:
# refused) and offsite (a host no worker serves: HostUnavailable).
d=$work/demo
mkdir -p "$d/nas-a/photos"
for n in 1 2 3; do head -c 100M /dev/urandom >"$d/nas-a/photos/raw-$n.bin"; done
sed "/^jobs:/,\$d" "$d/ferry.yaml" >"$d/ferry-ui.yaml"
cat >>"$d/ferry-ui.yaml" <<YAML
  nas-c: {data_address: "127.0.0.1:1", backend: dir, root: "$d/nas-c"}
jobs:
  share01:
    source: nas-a:share01
    target: nas-b:replicas/share01
  photos:
    source: nas-a:photos
    target: nas-b:replicas/photos
    stream: {bwlimit: 2MiB}
  docs:
    source: nas-a:share01
    target: nas-b:replicas/docs
  offsite:
    source: nas-a:share01
    target: nas-c:replicas/share01
    timeouts: {host: 10s}
YAML
cfg=$d/ferry-ui.yaml
"$ferry" apply --config "$cfg"
"$ferry" run --config "$cfg" offsite
"$ferry" run --config "$cfg" docs --wait
# An administrator "fixes" a file in the replica: ferry refuses to build on it.
f=$d/nas-b/replicas/docs/latest/documents/report-000.txt
chmod u+w "$(dirname "$f")" "$f"
echo "edited on the replica" >>"$f"
"$ferry" run --config "$cfg" docs --wait || true
sleep 1 # the second failed run gets its own workflow id (they are per second)
"$ferry" run --config "$cfg" docs --wait || true
"$ferry" run --config "$cfg" photos
# Let offsite fail (timeouts.host) and photos send a few heartbeats.
sleep 15
"$ferry" status --config "$cfg" photos

CHROMIUM=$chromium NODE_PATH=$work/pw/node_modules node "$repo/docs/img/shoot.cjs" "$ui" "$out"
ls -l "$out"/*.png
