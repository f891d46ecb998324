#!/usr/bin/env bash
# bench-sql.sh: loadcap's SQL modes (insert, values, copy) against pgbench
# running equivalent insert scripts, same PostgreSQL, same client count, one
# run; prints a markdown table of rows/s and ratios.
#
# Uses LOADCAP_TEST_PG when set; otherwise starts a throw-away PostgreSQL
# (Debian's postgresql package, as the postgres user, on 127.0.0.1:$PORT)
# and stops it afterwards. Exits non-zero when pgbench is missing, when the
# server cannot be started, or when the benchmark fails.
#   LOADCAP_BENCH_CLIENTS (4)  LOADCAP_BENCH_BATCH (100)  LOADCAP_BENCH_SECONDS (5)
#   LOADCAP_PGBENCH (pgbench of the newest /usr/lib/postgresql/*/bin, else PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${LOADCAP_BENCH_PG_PORT:-15439}
if [[ -z "${PGBIN:-}" ]]; then
	PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
fi
PGBENCH=${LOADCAP_PGBENCH:-}
if [[ -z "$PGBENCH" ]]; then
	if [[ -n "$PGBIN" && -x "$PGBIN/pgbench" ]]; then
		PGBENCH=$PGBIN/pgbench
	else
		PGBENCH=$(command -v pgbench || true)
	fi
fi
if [[ -z "$PGBENCH" || ! -x "$PGBENCH" ]]; then
	echo "bench-sql: pgbench not found (${PGBENCH:-not in /usr/lib/postgresql/*/bin nor PATH}): install Debian's postgresql-client or set LOADCAP_PGBENCH" >&2
	exit 2
fi

DATA=""
OUT=""
cleanup() {
	if [[ -n "$DATA" ]]; then
		su postgres -c "$PGBIN/pg_ctl -D $DATA/data -m fast -w stop" >/dev/null 2>&1 || true
		rm -rf "$DATA"
	fi
	if [[ -n "$OUT" ]]; then
		rm -f "$OUT"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z "${LOADCAP_TEST_PG:-}" ]]; then
	if [[ -z "$PGBIN" || ! -x "$PGBIN/initdb" ]]; then
		echo "bench-sql: no PostgreSQL in /usr/lib/postgresql/*/bin and LOADCAP_TEST_PG unset" >&2
		exit 2
	fi
	DATA=$(mktemp -d /tmp/loadcap-benchpg.XXXXXX)
	chown postgres "$DATA"
	su postgres -c "$PGBIN/initdb -D $DATA/data -A trust -U postgres" >/dev/null
	su postgres -c "$PGBIN/pg_ctl -D $DATA/data -w -l $DATA/log -o '-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c max_connections=100' start" >/dev/null
	su postgres -c "$PGBIN/psql -h 127.0.0.1 -p $PORT -U postgres -qc 'CREATE DATABASE loadcap'" >/dev/null
	LOADCAP_TEST_PG="postgres://postgres@127.0.0.1:$PORT/loadcap?sslmode=disable"
fi

# The whole output is kept: on failure it says why; on success only the
# table and the verdict lines are shown.
OUT=$(mktemp /tmp/loadcap-benchsql.XXXXXX)
status=0
LOADCAP_TEST_PG=$LOADCAP_TEST_PG LOADCAP_BENCH_SQL=1 LOADCAP_PGBENCH=$PGBENCH \
	go test -count=1 -v -timeout 10m -run '^TestSQLBench$' ./loadgen/pg/ >"$OUT" 2>&1 || status=$?
if [[ $status -ne 0 ]] || grep -q -e '^--- FAIL' -e '^FAIL' "$OUT" || ! grep -q '^--- PASS: TestSQLBench' "$OUT"; then
	tail -n 40 "$OUT" >&2
	echo "bench-sql: FAIL (go test exit $status)" >&2
	exit $((status == 0 ? 1 : status))
fi
grep -v '^\s*bench_test.go' "$OUT" | grep -E '^(\||SQL write|---|ok)'
