#!/usr/bin/env bash
# Scale measurements (issue #9): how reads and memory behave as the tree grows, and how fast a fresh secondary
# catches up with a large tree. On loopback, in a fresh directory, on the embedded default (SQLite):
#
#  1. Curve. A primary with no secondaries (it publishes at once, every SCALE_INTERVAL) is grown in steps to each
#     size of SCALE_SIZES that is at most SCALE_LEAVES, by bin/sigsum-bench add-leaf at c = SCALE_FILL_C. At each
#     size, every read mode of SCALE_READ_MODES runs at c = SCALE_READ_C for SCALE_READ_DURATION, then the
#     primary's VmRSS is read. Before the reads the primary is restarted, so that rss_mib is what a log of that size
#     holds once it has served reads, not the heap's high-water mark from the fill (which is fill_rss_mib, read
#     just before the restart). One line per size and mode:
#       measure=curve size=N mode=M rps=R p50_ms=A p99_ms=B rss_mib=M fill_rss_mib=F errors=E
#     The read modes fetch and verify the first SCALE_SETUP_LEAVES leaves before they run: by default the whole
#     tree (up to 2^20 leaves), so that inclusion proofs are asked for leaves drawn from all of it and consistency
#     proofs from old sizes across it, most of them in tiles the primary no longer holds. A smaller count asks
#     about the oldest leaves only, a working set the primary soon holds whole.
#     Each growth step prints measure=fill from=A to=B secs=S leaves_per_s=R errors=E.
#  2. Catch-up. Once the tree holds SCALE_LEAVES leaves, a fresh secondary is initialised and started against the
#     primary's internal listener; its get-secondary-tree-head is polled every 100 ms until it holds them all:
#       measure=catchup leaves=N secs=S leaves_per_s=R rss_mib=M
#     (secs from starting the secondary's process; rss_mib is the secondary's VmRSS when caught up).
#
# The key=value lines go to stdout (and $SCALE_DIR/results.txt), progress to stderr, a table at the end. Run it
# through `make scale`, which builds bin/ first. Everything is bounded: each fill step by SCALE_FILL_DURATION (+
# SCALE_FILL_DRAIN) and at most three attempts, each read run by SCALE_READ_DURATION (+ its bounded setup), the
# catch-up by SCALE_CATCHUP_TIMEOUT. Every process started here is stopped on exit.
#
# Knobs (environment): SCALE_LEAVES (1000000), SCALE_SIZES ("1000 10000 100000 1000000"), SCALE_READ_MODES
# ("inclusion consistency get-tree-head"), SCALE_READ_C (8), SCALE_READ_DURATION (5s), SCALE_SETUP_LEAVES (1048576),
# SCALE_FILL_C (64), SCALE_FILL_DURATION (most time one fill step sends new leaves, 1h), SCALE_FILL_DRAIN (60s),
# SCALE_INTERVAL (the primary's rotation interval, 1s), SCALE_CATCHUP_TIMEOUT (seconds, 600), SCALE_PORT (first of
# four loopback ports, 19965), SCALE_BIN (where sigsumd, sigsumctl and sigsum-bench are, ./bin), SCALE_DIR (state; default a new temporary directory, removed on exit unless
# SCALE_KEEP=1).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SCALE_BIN:-./bin}
target=${SCALE_LEAVES:-1000000}
sizes=${SCALE_SIZES:-1000 10000 100000 1000000}
modes=${SCALE_READ_MODES:-inclusion consistency get-tree-head}
read_c=${SCALE_READ_C:-8}
read_duration=${SCALE_READ_DURATION:-5s}
setup_leaves=${SCALE_SETUP_LEAVES:-1048576}
fill_c=${SCALE_FILL_C:-64}
fill_duration=${SCALE_FILL_DURATION:-1h}
fill_drain=${SCALE_FILL_DRAIN:-60s}
interval=${SCALE_INTERVAL:-1s}
catchup_timeout=${SCALE_CATCHUP_TIMEOUT:-600}
port=${SCALE_PORT:-19965}
case $target in '' | *[!0-9]*) echo "scale: SCALE_LEAVES=$target: want a number of leaves" >&2; exit 2 ;; esac
case $catchup_timeout in '' | *[!0-9]*) echo "scale: SCALE_CATCHUP_TIMEOUT=$catchup_timeout: want seconds" >&2; exit 2 ;; esac
[ "$target" -ge 2 ] || { echo "scale: SCALE_LEAVES must be at least 2 (the read modes need 2 leaves)" >&2; exit 2; }
dir=${SCALE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sigsumd-scale.XXXXXX")}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

p_ext=127.0.0.1:$port
p_int=127.0.0.1:$((port + 1))
s_ext=127.0.0.1:$((port + 2))
s_int=127.0.0.1:$((port + 3))

pids=()
bench_pid=
cleanup() {
	[ -n "$bench_pid" ] && kill "$bench_pid" 2>/dev/null
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	# Bounded: a node that has not stopped after 10 s is killed.
	for _ in $(seq 100); do
		alive=0
		for pid in "${pids[@]}" $bench_pid; do kill -0 "$pid" 2>/dev/null && alive=1; done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	for pid in "${pids[@]}" $bench_pid; do kill -KILL "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}" $bench_pid; do wait "$pid" 2>/dev/null || true; done
	if [ -z "${SCALE_DIR:-}" ] && [ "${SCALE_KEEP:-0}" != 1 ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Nothing may answer on our ports yet: we would measure somebody else's node.
for a in "$p_ext" "$p_int" "$s_ext" "$s_int"; do
	if curl -s -o /dev/null --max-time 1 "http://$a/"; then
		echo "scale: something already listens on $a; set SCALE_PORT" >&2
		exit 1
	fi
done

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.1f", (s > 0 ? n / s : 0) }'; }
# rss_mib, cpu_secs, cpu_us_per, load1
. scripts/measure.sh
# kv KEY LINE prints the value of KEY in a key=value line.
kv() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit } }' <<<"$2"; }
# The published size, or nothing when the primary does not answer.
published_size() { curl -sf --max-time 5 "http://$p_ext/get-tree-head" 2>/dev/null | sed -n 's/^size=//p' || true; }

results=$dir/results.txt
: >"$results"
emit() { echo "$*" | tee -a "$results"; }

# bench ARGS... runs sigsum-bench against the primary and sets line to its key=value line. It runs in the
# background and is waited for, so that a signal stops the script (and, through cleanup, the bench) at once.
bench() {
	"$bin/sigsum-bench" -log-url "http://$p_ext" -log-key "$dir/primary/key.pub" "$@" \
		>"$dir/bench.out" 2>>"$dir/bench-errors.log" &
	bench_pid=$!
	wait "$bench_pid" || { echo "scale: sigsum-bench $* failed; see $dir/bench-errors.log" >&2; exit 1; }
	bench_pid=
	line=$(head -n 1 "$dir/bench.out")
	cat "$dir/bench.out" >>"$dir/bench.txt"
	echo "  $line" >&2
}

# size_now sets size to the published size; the primary must answer.
size_now() {
	size=$(published_size || true)
	[ -n "$size" ] || { echo "scale: the primary does not answer get-tree-head; see $dir/primary.log" >&2; exit 1; }
}

# settle N waits (at most 60 s) until the published size is at least N, or has not moved for 5 s; sets size.
settle() {
	local want=$1 last= same=0
	for _ in $(seq 600); do
		size_now
		[ "$size" -ge "$want" ] && return 0
		if [ "$size" = "$last" ]; then
			same=$((same + 1))
			[ "$same" -ge 50 ] && return 0
		else
			same=0
		fi
		last=$size
		sleep 0.1
	done
}

# grow N adds leaves until the published tree holds N, in at most three add-leaf runs.
grow() {
	local want=$1 from t0 t1 secs e errors=0 cpu0 cpu1
	size_now
	from=$size
	[ "$size" -ge "$want" ] && return 0
	echo "scale: growing the tree from $from to $want leaves" >&2
	t0=$(now)
	cpu0=$(cpu_secs "$primary_pid")
	for _ in 1 2 3; do
		bench -mode add-leaf -c "$fill_c" -leaves $((want - size)) -duration "$fill_duration" -drain "$fill_drain" \
			-retry 1s
		e=$(kv errors "$line")
		errors=$((errors + ${e:-0}))
		settle "$want"
		[ "$size" -ge "$want" ] && break
	done
	t1=$(now)
	cpu1=$(cpu_secs "$primary_pid")
	if [ "$size" -lt "$want" ]; then
		echo "scale: the tree holds $size leaves, not $want, after three add-leaf runs; see $dir/bench-errors.log" >&2
		exit 1
	fi
	secs=$(elapsed "$t0" "$t1")
	# cpu_us_per_leaf: the primary's CPU time (user + system, all threads) per leaf added, the steadiest figure of
	# what a leaf costs on a shared machine; load1 is the load average as the step ends.
	emit "measure=fill from=$from to=$size secs=$secs leaves_per_s=$(rate $((size - from)) "$secs")" \
		"cpu_us_per_leaf=$(cpu_us_per "$cpu0" "$cpu1" $((size - from))) load1=$(load1) errors=$errors"
}

# start_primary starts the primary and waits (at most 300 s: a restart reads the whole tree) until it answers.
start_primary() {
	"$bin/sigsumd" -role primary -config "$dir/primary/sigsumd.toml" -interval "$interval" \
		-external-endpoint "$p_ext" -internal-endpoint "$p_int" -log-level warn 2>>"$dir/primary.log" &
	primary_pid=$!
	pids+=("$primary_pid")
	for _ in $(seq 1500); do
		[ -n "$(published_size)" ] && return 0
		kill -0 "$primary_pid" 2>/dev/null || break
		sleep 0.2
	done
	echo "scale: the primary did not come up; see $dir/primary.log" >&2
	exit 1
}

# restart_primary stops the primary (SIGTERM, at most 60 s) and starts it again, so that what it holds afterwards
# is what a log of this size needs, not the heap's high-water mark from being grown under load.
restart_primary() {
	kill "$primary_pid"
	for _ in $(seq 600); do
		kill -0 "$primary_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$primary_pid" 2>/dev/null || true
	wait "$primary_pid" 2>/dev/null || true
	start_primary
}

# The primary, without secondaries: every rotation publishes what is sequenced.
"$bin/sigsumctl" init -role primary -data-dir "$dir/primary" >/dev/null 2>&1
start_primary

echo "scale: primary http://$p_ext (no secondaries), SQLite, interval $interval, $(nproc) cores; up to $target leaves; state in $dir" >&2
echo "scale: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# 1. The curve.
for n in $sizes; do
	if [ "$n" -gt "$target" ]; then
		echo "scale: size $n skipped (above SCALE_LEAVES=$target)" >&2
		continue
	fi
	grow "$n"
	fill_rss=$(rss_mib "$primary_pid")
	restart_primary
	for m in $modes; do
		bench -mode "$m" -c "$read_c" -duration "$read_duration" -setup-leaves "$setup_leaves"
		emit "measure=curve size=$(kv tree_size "$line") mode=$m rps=$(kv rps "$line") p50_ms=$(kv p50_ms "$line")" \
			"p99_ms=$(kv p99_ms "$line") rss_mib=$(rss_mib "$primary_pid") fill_rss_mib=$fill_rss errors=$(kv errors "$line")"
	done
done

# 2. The catch-up of a fresh secondary.
grow "$target"
n=$size
"$bin/sigsumctl" init -role secondary -data-dir "$dir/secondary" -primary-url "https://$p_int" \
	-log-public-key "$dir/primary/key.pub" >/dev/null 2>&1
# The internal API is mutual TLS: the primary serves its leaves only to secondaries it lists, so it restarts with
# this one (it signs nothing new meanwhile: no leaves are added).
printf '\n[[primary.secondaries]]\nurl = "https://%s"\npubkey-file = "%s"\n' "$s_int" "$dir/secondary/key.pub" \
	>>"$dir/primary/sigsumd.toml"
restart_primary
echo "scale: starting a fresh secondary against a tree of $n leaves" >&2
t0=$(now)
"$bin/sigsumd" -role secondary -config "$dir/secondary/sigsumd.toml" \
	-external-endpoint "$s_ext" -internal-endpoint "$s_int" -log-level warn 2>>"$dir/secondary.log" &
secondary_pid=$!
pids+=("$secondary_pid")
size=0
deadline=$(awk -v t="$t0" -v d="$catchup_timeout" 'BEGIN { printf "%d", t + d }')
for _ in $(seq $((catchup_timeout * 10))); do
	size=$(curl -sfk --max-time 2 "https://$s_int/get-secondary-tree-head" 2>/dev/null | sed -n 's/^size=//p' || true)
	size=${size:-0}
	[ "$size" -ge "$n" ] && break
	kill -0 "$secondary_pid" 2>/dev/null || { echo "scale: the secondary exited; see $dir/secondary.log" >&2; exit 1; }
	[ "${EPOCHREALTIME%.*}" -ge "$deadline" ] && break
	sleep 0.1
done
t1=$(now)
if [ "$size" -lt "$n" ]; then
	echo "scale: the secondary holds $size of $n leaves after ${catchup_timeout}s; see $dir/secondary.log" >&2
	exit 1
fi
secs=$(elapsed "$t0" "$t1")
emit "measure=catchup leaves=$n secs=$secs leaves_per_s=$(rate "$n" "$secs") rss_mib=$(rss_mib "$secondary_pid")"

echo "scale: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
[ -s "$dir/bench-errors.log" ] && { echo "scale: first errors:" >&2; head -n 20 "$dir/bench-errors.log" >&2; }

# The tables: the curve, one row per size and mode; then the fill steps and the catch-up.
echo
table() {
	awk -v want="$1" -v cols="$2" 'BEGIN {
		n = split(cols, c, " ")
		for (i = 1; i <= n; i++) printf "%s%s", c[i], (i < n ? "\t" : "\n")
	}
	$1 == "measure=" want {
		delete kv
		for (i = 1; i <= NF; i++) { split($i, a, "="); kv[a[1]] = a[2] }
		for (i = 1; i <= n; i++) printf "%s%s", kv[c[i]], (i < n ? "\t" : "\n")
	}' "$results" | column -t
}
table curve "size mode rps p50_ms p99_ms rss_mib fill_rss_mib errors"
echo
table fill "from to secs leaves_per_s cpu_us_per_leaf load1 errors"
echo
table catchup "leaves secs leaves_per_s rss_mib"
