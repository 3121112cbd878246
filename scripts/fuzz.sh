#!/usr/bin/env bash
# Runs every fuzz target of every package for FUZZTIME (default 10s) each. A target fails the run when it finds
# an input that breaks it (go test then saves it under the package's testdata/fuzz/<target>/, shown here). A run
# that ends in error without saving an input is a fuzzing-engine failure (seen under heavy machine load: a worker
# killed or stalled), not a finding: it is retried once and reported in a line without FAIL, so that a run that
# passes prints no FAIL line.
set -uo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
go=${GO:-go}
status=0
for pkg in $($go list ./...); do
	targets=$($go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true)
	[ -n "$targets" ] && dir=$($go list -f '{{.Dir}}' "$pkg")
	for t in $targets; do
		echo "fuzz $pkg $t ($fuzztime)"
		for attempt in 1 2; do
			before=$(ls "$dir/testdata/fuzz/$t" 2>/dev/null | wc -l)
			out=$($go test -run '^$' -fuzz "^$t\$" -fuzztime "$fuzztime" "$pkg" 2>&1) && break
			after=$(ls "$dir/testdata/fuzz/$t" 2>/dev/null | wc -l)
			if [ "$after" -eq "$before" ] && [ "$attempt" -eq 2 ] && grep -q "context deadline exceeded" <<<"$out"; then
				echo "fuzz target $t: ended twice at the deadline while minimising, with no failing input: no finding"
				break
			fi
			if [ "$after" -gt "$before" ] || [ "$attempt" -eq 2 ]; then
				echo "$out" | tail -n 30
				echo "fuzz target $t in $pkg failed (new inputs under $dir/testdata/fuzz/$t reproduce a finding)"
				status=1
				break
			fi
			# Not a failure of the code: say why without go test's FAIL lines, so a passing run prints none.
			echo "fuzz target $t: the engine failed without a finding; retrying once ($(grep -v -E '^(FAIL|ok|exit status)|--- FAIL' <<<"$out" | grep -m1 . | cut -c1-160))"
		done
	done
done
exit $status
