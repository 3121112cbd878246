# Shared by bench.sh and scale.sh (sourced): what a node process costs, read from /proc.

# rss_mib PID prints the process's resident set in MiB (0 when it is gone).
rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024; found = 1 } END { if (!found) printf "0" }' "/proc/$1/status" 2>/dev/null || echo 0; }

# cpu_secs PID prints the CPU time (user + system) the process has used, in seconds (0 when it is gone).
cpu_secs() {
	local hz
	hz=$(getconf CLK_TCK)
	# The command name (field 2) may hold spaces: count fields after its closing parenthesis.
	sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk -v hz="$hz" '{ printf "%.2f", ($12 + $13) / hz }' || echo 0
}

# cpu_us_per PID_CPU_BEFORE PID_CPU_AFTER N prints the CPU microseconds per item of N items (0 for none).
cpu_us_per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.1f", (n > 0 ? (b - a) * 1e6 / n : 0) }'; }

# load1 prints the one-minute load average.
load1() { cut -d' ' -f1 /proc/loadavg; }
