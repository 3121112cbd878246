#!/usr/bin/env bash
# Load benchmark: starts a primary and one secondary on the embedded default (SQLite) on loopback, in a fresh
# directory, with a rotation interval of 1 s and no witness, then runs bin/sigsum-bench at c = 1, 8, 64 for every
# mode and prints a table (the raw key=value lines stay in $BENCH_DIR/results.txt). Run it through `make bench`,
# which builds bin/ first. Everything is bounded: each mode runs BENCH_DURATION (+ BENCH_DRAIN for leaves still
# waiting for 200). Both nodes are stopped on exit.
#
# Knobs (environment): BENCH_DURATION (15s), BENCH_DRAIN (10s), BENCH_RETRY (how often add-leaf re-posts a leaf
# until 200, as a submitter does: commit latency is measured in these steps, 1s), BENCH_PROBES (leaves add-leaf
# keeps in flight beside the load, each re-posted every 10 ms: probe_commit_p50_ms is the log's commit latency,
# which the load's own figure overstates when its busy workers re-post late; 64, about 900 leaves a run, so that
# the p50 is good to about 15 ms), BENCH_INTERVAL (1s), BENCH_CS ("1 8 64"),
# BENCH_MODES ("add-leaf add-known get-tree-head get-leaves inclusion consistency tile entries"), BENCH_SECONDARY_MODES
# (the read modes also run against the secondary's public URL at the largest c, "get-tree-head get-leaves inclusion
# consistency tile entries"; empty: none), BENCH_LEAVES (most new leaves
# per add-leaf run, 100000), BENCH_PORT (first of five loopback ports, 18965), BENCH_DIR (state; default a new
# temporary directory, removed on exit unless BENCH_KEEP=1).
set -euo pipefail
cd "$(dirname "$0")/.."
# cpu_secs, cpu_us_per, load1
. scripts/measure.sh
bin=./bin
duration=${BENCH_DURATION:-15s}
drain=${BENCH_DRAIN:-10s}
retry=${BENCH_RETRY:-1s}
probes=${BENCH_PROBES:-64}
interval=${BENCH_INTERVAL:-1s}
cs=${BENCH_CS:-1 8 64}
modes=${BENCH_MODES:-add-leaf add-known get-tree-head get-leaves inclusion consistency tile entries}
secondary_modes=${BENCH_SECONDARY_MODES-get-tree-head get-leaves inclusion consistency tile entries}
leaves=${BENCH_LEAVES:-100000}
port=${BENCH_PORT:-18965}
dir=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sigsumd-bench.XXXXXX")}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

p_ext=127.0.0.1:$port
p_int=127.0.0.1:$((port + 2))
s_ext=127.0.0.1:$((port + 3))
s_int=127.0.0.1:$((port + 4))

pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [ -z "${BENCH_DIR:-}" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bin/sigsumctl" init -role primary -data-dir "$dir/primary" >/dev/null
"$bin/sigsumctl" init -role secondary -data-dir "$dir/secondary" -primary-url "https://$p_int" \
	-log-url "http://$p_ext" -log-public-key "$dir/primary/key.pub" >/dev/null
printf '\n[[primary.secondaries]]\nurl = "https://%s"\npubkey-file = "%s"\n' "$s_int" "$dir/secondary/key.pub" \
	>>"$dir/primary/sigsumd.toml"

# The secondary runs at its defaults (it long-polls the primary for new leaves); the interval is the primary's rotation interval.
"$bin/sigsumd" -role secondary -config "$dir/secondary/sigsumd.toml" \
	-external-endpoint "$s_ext" -internal-endpoint "$s_int" -log-level warn 2>>"$dir/secondary.log" &
pids+=($!)
"$bin/sigsumd" -role primary -config "$dir/primary/sigsumd.toml" -interval "$interval" \
	-external-endpoint "$p_ext" -internal-endpoint "$p_int" -log-level warn 2>>"$dir/primary.log" &
primary_pid=$!
pids+=("$primary_pid")

for _ in $(seq 100); do
	curl -sf "http://$p_ext/get-tree-head" >/dev/null 2>&1 && break
	sleep 0.2
done
curl -sf "http://$p_ext/get-tree-head" >/dev/null || { echo "bench: the primary did not come up; see $dir/primary.log" >&2; exit 1; }

echo "bench: primary http://$p_ext + 1 secondary, SQLite, interval $interval, $(nproc) cores; state in $dir"
echo "bench: load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
results=$dir/results.txt
: >"$results"
# Each line gets the primary's CPU time per request (cpu_us_per_req, user + system, all threads; for add-leaf also
# per accepted leaf, cpu_us_per_leaf) and the load average as the run ends (load1).
for c in $cs; do
	for m in $modes; do
		cpu0=$(cpu_secs "$primary_pid")
		line=$("$bin/sigsum-bench" -log-url "http://$p_ext" -log-key "$dir/primary/key.pub" -mode "$m" -c "$c" \
			-duration "$duration" -drain "$drain" -leaves "$leaves" -retry "$retry" -probes "$probes" 2>>"$dir/bench-errors.log" | head -n 1)
		cpu1=$(cpu_secs "$primary_pid")
		requests=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^requests=/) print substr($i, 10) }' <<<"$line")
		accepted=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^accepted=/) print substr($i, 10) }' <<<"$line")
		line="$line cpu_us_per_req=$(cpu_us_per "$cpu0" "$cpu1" "${requests:-0}")"
		[ "$m" = add-leaf ] && line="$line cpu_us_per_leaf=$(cpu_us_per "$cpu0" "$cpu1" "${accepted:-0}")"
		echo "$line load1=$(load1)" | tee -a "$results" | sed 's/^/  /' >&2
	done
done
# Reads from the secondary (it serves the log's read API at the published head it holds), at the largest c.
cmax=${cs##* }
for m in $secondary_modes; do
	"$bin/sigsum-bench" -log-url "http://$s_ext" -log-key "$dir/primary/key.pub" -mode "$m" -c "$cmax" \
		-duration "$duration" 2>>"$dir/bench-errors.log" | sed "s/^mode=$m /mode=$m@secondary /" | tee -a "$results" |
		sed 's/^/  /' >&2
done
echo "bench: load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -s "$dir/bench-errors.log" ] && { echo "bench: first errors:"; head -n 20 "$dir/bench-errors.log"; }

# The table: one row per run, from the key=value lines.
awk 'BEGIN {
	n = split("mode c rps p50_ms p99_ms accepted_per_s committed_per_s uncommitted commit_p50_ms commit_p95_ms commit_p99_ms probe_commit_p50_ms probe_commit_p95_ms tree_size cpu_us_per_req cpu_us_per_leaf load1 errors", cols, " ")
	for (i = 1; i <= n; i++) printf "%s%s", cols[i], (i < n ? "\t" : "\n")
}
{
	delete kv
	for (i = 1; i <= NF; i++) { split($i, a, "="); kv[a[1]] = a[2] }
	for (i = 1; i <= n; i++) printf "%s%s", kv[cols[i]], (i < n ? "\t" : "\n")
}' "$results" | column -t
