#!/usr/bin/env bash
# Starts a local log on loopback: one primary and two secondaries, each on its own SQLite store under ./demo.
# Ctrl-C stops all three. Run it through `make demo`, which builds bin/ first.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin
dir=${DEMO_DIR:-./demo}
mkdir -p "$dir"

ctl() { "$bin/sigsumctl" "$@"; }
[ -d "$dir/primary" ] || ctl init -role primary -data-dir "$dir/primary" >/dev/null
for s in 1 2; do
	[ -d "$dir/secondary$s" ] || ctl init -role secondary -data-dir "$dir/secondary$s" -primary-url http://127.0.0.1:6967 >/dev/null
done
if ! grep -q '^\[\[primary.secondaries\]\]' "$dir/primary/sigsumd.toml"; then
	for s in 1 2; do
		printf '\n[[primary.secondaries]]\nurl = "http://127.0.0.1:697%s"\npubkey-file = "%s"\n' \
			"$s" "$(cd "$dir" && pwd)/secondary$s/key.pub" >>"$dir/primary/sigsumd.toml"
	done
fi

[ -f "$dir/submitter" ] || ctl keygen -o "$dir/submitter" >/dev/null

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for s in 1 2; do
	"$bin/sigsumd" -role secondary -config "$dir/secondary$s/sigsumd.toml" -interval 500ms \
		-external-endpoint "127.0.0.1:698$s" -internal-endpoint "127.0.0.1:697$s" 2>>"$dir/secondary$s/log" &
	pids+=($!)
done
"$bin/sigsumd" -role primary -config "$dir/primary/sigsumd.toml" -interval 2s 2>>"$dir/primary/log" &
pids+=($!)

logkey=$(cat "$dir/primary/key.pub")
cat <<MSG
A Sigsum log runs on http://127.0.0.1:6965/ (primary), replicated by two secondaries.
Logs: $dir/*/log. Log public key: $logkey

Read it:
  curl http://127.0.0.1:6965/get-tree-head
  curl http://127.0.0.1:6965/get-leaves/0/10
Submit a leaf (run it again until it answers 200: committed once both secondaries hold it):
  echo hello | $bin/sigsumctl leaf -key-file $dir/submitter | curl -s -w '%{http_code}\n' --data-binary @- http://127.0.0.1:6965/add-leaf
Ctrl-C stops the log; its state stays in $dir.
MSG
wait
