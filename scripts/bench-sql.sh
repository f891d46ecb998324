#!/bin/sh
# bench-sql.sh: loadcap's SQL modes (insert, values, copy) against pgbench
# running equivalent insert scripts, same PostgreSQL, same client count, one
# run; prints a markdown table of rows/s and ratios.
#
# Uses LOADCAP_TEST_PG when set; otherwise starts a throw-away PostgreSQL
# (Debian's postgresql package, as the postgres user, on 127.0.0.1:$PORT)
# and stops it afterwards.
#   LOADCAP_BENCH_CLIENTS (4)  LOADCAP_BENCH_BATCH (100)  LOADCAP_BENCH_SECONDS (5)
set -eu
cd "$(dirname "$0")/.."
PORT=${LOADCAP_BENCH_PG_PORT:-15439}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
DATA=""
cleanup() {
	if [ -n "$DATA" ]; then
		su postgres -c "$PGBIN/pg_ctl -D $DATA/data -m fast -w stop" >/dev/null 2>&1 || true
		rm -rf "$DATA"
	fi
}
trap cleanup EXIT INT TERM
if [ -z "${LOADCAP_TEST_PG:-}" ]; then
	[ -x "$PGBIN/initdb" ] || { echo "bench-sql: no PostgreSQL in /usr/lib/postgresql/*/bin and LOADCAP_TEST_PG unset" >&2; exit 2; }
	DATA=$(mktemp -d /tmp/loadcap-benchpg.XXXXXX)
	chown postgres "$DATA"
	su postgres -c "$PGBIN/initdb -D $DATA/data -A trust -U postgres" >/dev/null
	su postgres -c "$PGBIN/pg_ctl -D $DATA/data -w -l $DATA/log -o '-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c max_connections=100' start" >/dev/null
	su postgres -c "$PGBIN/psql -h 127.0.0.1 -p $PORT -U postgres -qc 'CREATE DATABASE loadcap'" >/dev/null
	LOADCAP_TEST_PG="postgres://postgres@127.0.0.1:$PORT/loadcap?sslmode=disable"
fi
LOADCAP_TEST_PG=$LOADCAP_TEST_PG LOADCAP_BENCH_SQL=1 LOADCAP_PGBENCH=${LOADCAP_PGBENCH:-$PGBIN/pgbench} \
	go test -count=1 -v -timeout 10m -run '^TestSQLBench$' ./loadgen/pg/ | grep -v '^\s*bench_test.go' | grep -E '^(\||SQL write|---|ok|FAIL)'
