#!/usr/bin/env bash
# Starts a local log on loopback: one primary and two secondaries, each on its own SQLite store under ./demo, and
# a trust policy for it, so that the sigsumctl commands it prints work as they are. Ctrl-C stops all three and
# exits 0. Run it through `make demo`, which builds bin/ first.
#
# Environment: DEMO_DIR (state, default ./demo), DEMO_PORT (the primary's public port, default 6965; the demo uses
# it and the 20 ports above it), BIN (the binaries, default ./bin).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-./bin}
dir=${DEMO_DIR:-./demo}
base=${DEMO_PORT:-6965}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

p_pub=$base p_int=$((base + 2))
s_pub=($((base + 16)) $((base + 17))) s_int=($((base + 6)) $((base + 7)))
for port in "$p_pub" "$p_int" "${s_pub[@]}" "${s_int[@]}"; do
	if (: >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "demo: port $port on 127.0.0.1 is taken (another demo, or another server): stop it, or set DEMO_PORT" >&2
		exit 1
	fi
done

ctl() { "$bin/sigsumctl" "$@"; }
[ -d "$dir/primary" ] || ctl init -role primary -data-dir "$dir/primary" >/dev/null
for s in 0 1; do
	[ -d "$dir/secondary$s" ] || ctl init -role secondary -data-dir "$dir/secondary$s" \
		-primary-url "https://127.0.0.1:$p_int" -log-url "http://127.0.0.1:$p_pub" \
		-log-public-key "$dir/primary/key.pub" >/dev/null
done
if ! grep -q '^\[\[primary.secondaries\]\]' "$dir/primary/sigsumd.toml"; then
	for s in 0 1; do
		printf '\n[[primary.secondaries]]\nname = "secondary%s"\nurl = "https://127.0.0.1:%s"\npubkey-file = "%s"\n' \
			"$s" "${s_int[$s]}" "$dir/secondary$s/key.pub" >>"$dir/primary/sigsumd.toml"
	done
fi
[ -f "$dir/submitter" ] || ctl keygen -o "$dir/submitter" >/dev/null
# key.pub is "ssh-ed25519 <base64 of the SSH wire key>": its last 32 bytes are the key.
logkey=$(awk '{print $2}' "$dir/primary/key.pub" | base64 -d | tail -c 32 | od -An -tx1 | tr -d ' \n')
printf 'log %s http://127.0.0.1:%s\nquorum none\n' "$logkey" "$p_pub" >"$dir/trust-policy"

pids=()
stop() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

"$bin/sigsumd" -role primary -config "$dir/primary/sigsumd.toml" -interval 2s \
	-external-endpoint "127.0.0.1:$p_pub" -internal-endpoint "127.0.0.1:$p_int" 2>>"$dir/primary/log" &
pids+=($!)
for s in 0 1; do
	"$bin/sigsumd" -role secondary -config "$dir/secondary$s/sigsumd.toml" -interval 500ms \
		-external-endpoint "127.0.0.1:${s_pub[$s]}" -internal-endpoint "127.0.0.1:${s_int[$s]}" \
		2>>"$dir/secondary$s/log" &
	pids+=($!)
done

# Every node must come up: a bind error or a bad configuration ends the demo here, with the node's log.
names=(primary secondary0 secondary1)
ports=("$p_int" "${s_int[@]}")
for i in 0 1 2; do
	up=
	for _ in $(seq 150); do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then break; fi
		if curl -skf "https://127.0.0.1:${ports[$i]}/livez" >/dev/null 2>&1; then up=1; break; fi
		sleep 0.1
	done
	if [ -z "$up" ]; then
		echo "demo: the ${names[$i]} did not start; the end of $dir/${names[$i]}/log:" >&2
		tail -n 5 "$dir/${names[$i]}/log" >&2
		exit 1
	fi
done

cat <<MSG
A Sigsum log runs on http://127.0.0.1:$p_pub/ (primary), replicated by two secondaries, all ready.
Logs: $dir/*/log. Log public key (hex): $logkey; trust policy: $dir/trust-policy

Status pages (open them in a browser): http://127.0.0.1:$p_pub/ (primary), http://127.0.0.1:${s_pub[0]}/ and
http://127.0.0.1:${s_pub[1]}/ (secondaries); the same facts for scripts:
  $bin/sigsumctl status -url http://127.0.0.1:$p_pub/
Read it:
  curl http://127.0.0.1:$p_pub/get-tree-head
Submit a file and get its proof of logging (waits until both secondaries hold it):
  echo hello >hello.txt && $bin/sigsumctl submit -policy $dir/trust-policy -key-file $dir/submitter hello.txt
  $bin/sigsumctl verify -policy $dir/trust-policy -key-file $dir/submitter.pub hello.txt
Follow it:
  $bin/sigsumctl monitor -policy $dir/trust-policy -once
Ctrl-C stops the log; its state stays in $dir.
MSG
wait
