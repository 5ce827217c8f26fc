#!/usr/bin/env bash
# make bench: the in-process benchmarks, side by side in one run, with the
# figures written into README.md's benchmark section. Set COUNT for more
# runs per benchmark (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
{
	go test -run '^$' -bench 'BenchmarkTransaction' -benchmem -benchtime 20000x -count "$count" ./protocol/
	go test -run '^$' -bench 'BenchmarkDataReader' -benchmem -benchtime 1s -count "$count" ./protocol/
	go test -run '^$' -bench 'BenchmarkData$|BenchmarkSieveDelivery|BenchmarkRemoteDeliver' -benchmem -benchtime 200x -count "$count" ./delivery/
	go test -run '^$' -bench . -benchmem -benchtime 100x -count "$count" ./delivery/maildir/
	go test -run '^$' -bench . -benchmem -benchtime 200x -count "$count" ./delivery/pipe/
	go test -run '^$' -bench . -benchmem -benchtime 10x -count "$count" ./sasl/
	go test -run '^$' -bench 'BenchmarkClientSend' -benchmem -benchtime 2000x -count "$count" ./protocol/
	go test -run '^$' -bench 'BenchmarkPostgresLookup' -benchmem -benchtime 2000x -count "$count" ./directory/sql/
} 2>&1 | grep -v '^smtp/server' | tee "$out"
go run ./bench/benchfmt -readme README.md -command "make bench (COUNT=$count)" < "$out"
echo "README.md benchmark section updated"
