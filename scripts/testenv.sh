#!/usr/bin/env bash
# testenv.sh up|down|env|status: the real servers `make test` runs against.
#
#   up      install what is missing (Debian packages influxdb, postgresql,
#           pgbouncer, nginx, openssl, iproute2, nftables, conntrack, curl, chromium,
#           prometheus; needs root; `apt-get update` once, only if something is
#           missing), then start on 127.0.0.1 only:
#             two InfluxDB 1.x  (HTTP 18086 and 18087, RPC 18088 and 18089),
#             one PostgreSQL    (port 15432, socket in the throw-away dir,
#                               ssl = on with a certificate made here),
#             two pgbouncer     (in front of that PostgreSQL, as user postgres:
#                               16432 pool_mode=transaction, 16433 session),
#             one nginx         (HTTPS 18443 in front of the first InfluxDB:
#                               at /, under /influx/, under /mtls/ only
#                               with a client certificate, /auth/ always 401),
#             one Prometheus    (port 19090; scrapes every 1 s the targets tests
#                               write as file_sd JSON into the dir named by
#                               LOADCAP_TEST_PROMETHEUS_TARGETS; evaluates a
#                               test copy of deploy/prometheus/loadcap.rules.yml
#                               whose alerts' `for:` is cut to 15s),
#           each with throw-away data in /tmp/loadcap-testenv.XXXXXX, a test
#           CA with server and client certificates in its tls/ directory,
#           create the database `loadcap` and write .testenv/env.
#           Running `up` again while everything is up changes nothing.
#   down    stop the servers this script started (by their recorded pids,
#           checked against their command lines) and remove the throw-away dir.
#   env     print the environment as `export` lines: eval "$(scripts/testenv.sh env)"
#   status  say whether the environment is up.
#
# Ports can be moved with LOADCAP_TESTENV_INFLUX1_PORT, ..._INFLUX2_PORT,
# ..._INFLUX1_RPC_PORT, ..._INFLUX2_RPC_PORT, ..._PG_PORT, ..._PGBOUNCER_TX_PORT,
# ..._PGBOUNCER_SESSION_PORT, ..._NGINX_PORT and ..._PROM_PORT. Every wait is
# bounded; nothing started here listens on anything but 127.0.0.1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${LOADCAP_TESTENV_DIR:-$ROOT/.testenv}
STATE=$STATE_DIR/state
ENV_FILE=$STATE_DIR/env

INFLUX1_PORT=${LOADCAP_TESTENV_INFLUX1_PORT:-18086}
INFLUX2_PORT=${LOADCAP_TESTENV_INFLUX2_PORT:-18087}
INFLUX1_RPC_PORT=${LOADCAP_TESTENV_INFLUX1_RPC_PORT:-18088}
INFLUX2_RPC_PORT=${LOADCAP_TESTENV_INFLUX2_RPC_PORT:-18089}
PG_PORT=${LOADCAP_TESTENV_PG_PORT:-15432}
PGB_TX_PORT=${LOADCAP_TESTENV_PGBOUNCER_TX_PORT:-16432}
PGB_SESSION_PORT=${LOADCAP_TESTENV_PGBOUNCER_SESSION_PORT:-16433}
NGINX_PORT=${LOADCAP_TESTENV_NGINX_PORT:-18443}
PROM_PORT=${LOADCAP_TESTENV_PROM_PORT:-19090}
DB=loadcap
WORK_PREFIX=/tmp/loadcap-testenv.
START_TIMEOUT=60 # seconds, per server

log() { echo "testenv: $*" >&2; }

# alive PID: the process exists and is not a zombie (PID 1 here may not reap).
alive() {
	local pid=$1 st
	[[ -n $pid && -r /proc/$pid/stat ]] || return 1
	st=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[[ -n $st && $st != Z && $st != X ]]
}

# ours PID NEEDLE: the process is alive and its command line contains NEEDLE
# (a path inside our throw-away dir), so a recycled pid is never signalled.
ours() {
	local pid=$1 needle=$2
	alive "$pid" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$needle"
}

# stop_pid PID NEEDLE SIGNAL: signal our process and wait (bounded) for it to
# go; SIGKILL after 20 s.
stop_pid() {
	local pid=$1 needle=$2 sig=$3 i
	ours "$pid" "$needle" || return 0
	kill "-$sig" "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 200; i++)); do
		alive "$pid" || return 0
		sleep 0.1
	done
	log "pid $pid did not stop after SIG$sig in 20s; sending SIGKILL"
	ours "$pid" "$needle" && kill -KILL "$pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		alive "$pid" || return 0
		sleep 0.1
	done
	log "pid $pid still alive after SIGKILL"
}

pg_bindir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[[ -n $d && -x $d/pg_ctl ]] && echo "$d"
}

# as_pg CMD...: PostgreSQL refuses to run as root, so run it as `postgres`
# (from /, since the caller's directory may be closed to that user).
as_pg() {
	if [[ $(id -u) == 0 ]]; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

ensure_packages() {
	local missing=()
	command -v influxd >/dev/null || missing+=(influxdb)
	pg_bindir >/dev/null || missing+=(postgresql)
	[[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
	[[ -x /usr/sbin/nginx ]] || missing+=(nginx)
	command -v openssl >/dev/null || missing+=(openssl)
	command -v ip >/dev/null || missing+=(iproute2)
	command -v nft >/dev/null || missing+=(nftables)
	# the lab's firewall tests read the router's connection table.
	command -v conntrack >/dev/null || missing+=(conntrack)
	command -v curl >/dev/null || missing+=(curl)
	command -v ss >/dev/null || missing+=(iproute2)
	# results' report test renders the HTML report in headless Chromium.
	[[ -x /usr/bin/chromium ]] || missing+=(chromium)
	# the exporter's tests: a real Prometheus, and promtool (same package).
	command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
	((${#missing[@]} == 0)) && return 0
	if [[ $(id -u) != 0 ]]; then
		log "missing packages: ${missing[*]}; install them (as root: apt-get install -y ${missing[*]})"
		return 1
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >&2 || return 1
	apt-get install -y -q "${missing[@]}" >&2 || return 1
	if [[ -z $(pg_bindir) ]] || ! command -v influxd >/dev/null || ! command -v prometheus >/dev/null; then
		log "packages installed but influxd, pg_ctl or prometheus still not found"
		return 1
	fi
}

port_busy() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

check_ports_free() {
	local p
	for p in "$INFLUX1_PORT" "$INFLUX2_PORT" "$INFLUX1_RPC_PORT" "$INFLUX2_RPC_PORT" "$PG_PORT" \
		"$PGB_TX_PORT" "$PGB_SESSION_PORT" "$NGINX_PORT" "$PROM_PORT"; do
		if port_busy "$p"; then
			log "port $p is already in use by a process this script did not start:"
			ss -Hltnp "sport = :$p" >&2 || true
			return 1
		fi
	done
}

# record KEY VALUE: append to the state file, so `down` can clean up even a
# half-finished `up`.
record() { printf '%s=%q\n' "$1" "$2" >>"$STATE"; }

write_influx_config() { # FILE DIR HTTP_PORT RPC_PORT
	local file=$1 dir=$2 http=$3 rpc=$4
	cat >"$file" <<EOF
# generated by scripts/testenv.sh; throw-away instance, loopback only
reporting-disabled = true
reporting-enabled = false
bind-address = "127.0.0.1:$rpc"

[meta]
  dir = "$dir/meta"
  logging-enabled = false

[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  index-version = "inmem"
  query-log-enabled = false
  trace-logging-enabled = false

[coordinator]
  log-queries-after = "0s"

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$http"
  log-enabled = false
  suppress-write-log = true
  pprof-enabled = false
  unix-socket-enabled = false

[ifql]
  enabled = false

[continuous_queries]
  enabled = false
  log-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
EOF
}

start_influx() { # N HTTP_PORT RPC_PORT
	local n=$1 http=$2 rpc=$3 dir pid i code
	dir=$WORK/influx$n
	mkdir -p "$dir/meta" "$dir/data" "$dir/wal"
	write_influx_config "$dir/influxdb.conf" "$dir" "$http" "$rpc"
	# setsid: a terminal's ^C goes to the tests, and the trap stops the servers.
	setsid influxd run -config "$dir/influxdb.conf" >"$dir/influxd.log" 2>&1 </dev/null &
	pid=$!
	record "INFLUX${n}_PID" "$pid"
	for ((i = 0; i < START_TIMEOUT * 4; i++)); do
		if ! alive "$pid"; then
			log "influxd $n exited during start; last lines of $dir/influxd.log:"
			tail -n 20 "$dir/influxd.log" >&2
			return 1
		fi
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$http/ping" || true)
		[[ $code == 204 ]] && break
		sleep 0.25
	done
	if [[ $code != 204 ]]; then
		log "influxd $n did not answer /ping with 204 within ${START_TIMEOUT}s"
		tail -n 20 "$dir/influxd.log" >&2
		return 1
	fi
	local out
	out=$(curl -sS --max-time 10 -XPOST "http://127.0.0.1:$http/query" --data-urlencode "q=CREATE DATABASE $DB") || {
		log "influxd $n: create database $DB failed"
		return 1
	}
	if [[ $out == *'"error"'* ]]; then
		log "influxd $n: create database $DB: $out"
		return 1
	fi
	log "influxd $n up: http://127.0.0.1:$http (rpc 127.0.0.1:$rpc, pid $pid)"
}

start_pg() {
	local bin dir data pid
	bin=$(pg_bindir) || {
		log "no PostgreSQL binaries under /usr/lib/postgresql"
		return 1
	}
	dir=$WORK/pg
	data=$dir/data
	mkdir -p "$dir/sock"
	if [[ $(id -u) == 0 ]]; then
		id postgres >/dev/null 2>&1 || {
			log "user postgres does not exist (it comes with the postgresql package)"
			return 1
		}
		chown -R postgres: "$dir"
	fi
	record PG_DATA "$data"
	record PG_BIN "$bin"
	as_pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C --no-sync --no-instructions \
		>"$dir/initdb.log" 2>&1 || {
		log "initdb failed:"
		tail -n 20 "$dir/initdb.log" >&2
		return 1
	}
	# One role must prove its password (the wrong-password test); everyone
	# else is trusted on loopback.
	sed -i '0,/^host/s//host all loadcap_pw_test 127.0.0.1\/32 scram-sha-256\nhost/' "$data/pg_hba.conf"
	# TLS with the test CA's server certificate; the key must belong to
	# the server's user and be private.
	install -m 600 "$WORK/tls/server.key" "$dir/server.key"
	install -m 644 "$WORK/tls/server.pem" "$dir/server.pem"
	if [[ $(id -u) == 0 ]]; then chown postgres: "$dir/server.key" "$dir/server.pem"; fi
	local opts="-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$dir/sock"
	opts+=" -c max_connections=300 -c shared_buffers=64MB -c fsync=off -c synchronous_commit=off"
	opts+=" -c full_page_writes=off -c logging_collector=off"
	opts+=" -c ssl=on -c ssl_cert_file=$dir/server.pem -c ssl_key_file=$dir/server.key"
	# pg_ctl's child setsid()s, so a terminal's ^C does not reach it.
	as_pg "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -o "$opts" -w -t "$START_TIMEOUT" -s start || {
		log "postgres did not start within ${START_TIMEOUT}s; last lines of $dir/postgres.log:"
		tail -n 20 "$dir/postgres.log" >&2
		return 1
	}
	pid=$(head -n 1 "$data/postmaster.pid")
	record PG_PID "$pid"
	as_pg "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
		-c "CREATE DATABASE $DB" >&2 || {
		log "postgres: create database $DB failed"
		return 1
	}
	log "postgres up: 127.0.0.1:$PG_PORT (pid $pid, data $data)"
}

# make_tls: a test CA, a server certificate for 127.0.0.1 and localhost, and
# a client certificate, all signed by the CA, in $WORK/tls.
make_tls() {
	local d=$WORK/tls
	mkdir -p "$d"
	{
		openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=loadcap test CA" \
			-keyout "$d/ca.key" -out "$d/ca.pem" &&
			openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
				-keyout "$d/server.key" -out "$d/server.csr" &&
			printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$d/server.ext" &&
			openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
				-days 30 -extfile "$d/server.ext" -out "$d/server.pem" &&
			openssl req -newkey rsa:2048 -nodes -subj "/CN=loadcap test client" \
				-keyout "$d/client.key" -out "$d/client.csr" &&
			printf 'extendedKeyUsage=clientAuth\n' >"$d/client.ext" &&
			openssl x509 -req -in "$d/client.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
				-days 30 -extfile "$d/client.ext" -out "$d/client.pem"
	} >"$d/openssl.log" 2>&1 || {
		log "making the test certificates failed:"
		tail -n 20 "$d/openssl.log" >&2
		return 1
	}
	chmod 644 "$d"/*.pem "$d"/*.key
	log "test CA and certificates in $d"
}

# start_pgbouncer NAME POOL_MODE PORT SERVER_CONNS: a pgbouncer in front of
# the test PostgreSQL with at most SERVER_CONNS server connections, run as
# postgres, daemonized with its pid file in our dir. In session pooling
# every client connection holds a server connection while it is open: the
# tests' keep-alive pool (64) must fit.
start_pgbouncer() {
	local name=$1 mode=$2 port=$3 size=$4 dir pid i
	dir=$WORK/pgbouncer-$mode
	mkdir -p "$dir"
	printf '"postgres" ""\n' >"$dir/userlist.txt"
	cat >"$dir/pgbouncer.ini" <<EOF
; generated by scripts/testenv.sh; throw-away instance, loopback only
[databases]
$DB = host=127.0.0.1 port=$PG_PORT dbname=$DB
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = $mode
max_client_conn = 4000
default_pool_size = $size
admin_users = postgres
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
server_tls_sslmode = disable
EOF
	if [[ $(id -u) == 0 ]]; then chown -R postgres: "$dir"; fi
	as_pg /usr/sbin/pgbouncer -q -d "$dir/pgbouncer.ini" >"$dir/start.log" 2>&1 || {
		log "pgbouncer ($mode) did not start:"
		tail -n 20 "$dir/start.log" "$dir/pgbouncer.log" >&2 2>/dev/null
		return 1
	}
	for ((i = 0; i < START_TIMEOUT * 4; i++)); do
		[[ -s $dir/pgbouncer.pid ]] && port_busy "$port" && break
		sleep 0.25
	done
	pid=$(cat "$dir/pgbouncer.pid" 2>/dev/null || true)
	record "PGB_${name}_PID" "$pid"
	if ! port_busy "$port" || ! ours "$pid" "$WORK/"; then
		log "pgbouncer ($mode) is not listening on 127.0.0.1:$port within ${START_TIMEOUT}s"
		tail -n 20 "$dir/pgbouncer.log" >&2 2>/dev/null
		return 1
	fi
	log "pgbouncer up: 127.0.0.1:$port pool_mode=$mode (pid $pid)"
}

# start_nginx: HTTPS with the test CA's server certificate in front of the
# first InfluxDB: at /, under /influx/ (the prefix stripped) and under
# /mtls/, which answers 400 without a client certificate of the test CA;
# /auth/ asks for a password no test knows (401 on every write).
start_nginx() {
	local dir=$WORK/nginx pid i code
	mkdir -p "$dir/tmp"
	chmod 777 "$dir/tmp"
	printf 'loadcap:%s\n' "$(openssl passwd -apr1 "$RANDOM$RANDOM$RANDOM")" >"$dir/htpasswd"
	chmod 644 "$dir/htpasswd"
	cat >"$dir/nginx.conf" <<EOF
# generated by scripts/testenv.sh; throw-away instance, loopback only
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $dir/tmp/body;
	proxy_temp_path $dir/tmp/proxy;
	fastcgi_temp_path $dir/tmp/fastcgi;
	uwsgi_temp_path $dir/tmp/uwsgi;
	scgi_temp_path $dir/tmp/scgi;
	client_max_body_size 64m;
	client_body_buffer_size 4m;
	upstream influx { server 127.0.0.1:$INFLUX1_PORT; keepalive 32; }
	server {
		listen 127.0.0.1:$NGINX_PORT ssl;
		ssl_certificate $WORK/tls/server.pem;
		ssl_certificate_key $WORK/tls/server.key;
		ssl_client_certificate $WORK/tls/ca.pem;
		ssl_verify_client optional;
		keepalive_requests 1000000;
		proxy_http_version 1.1;
		proxy_set_header Connection "";
		location / { proxy_pass http://influx; }
		location /influx/ { proxy_pass http://influx/; }
		location /mtls/ {
			if (\$ssl_client_verify != SUCCESS) { return 400 "client certificate required\n"; }
			proxy_pass http://influx/;
		}
		location /auth/ {
			auth_basic "loadcap test";
			auth_basic_user_file $dir/htpasswd;
			proxy_pass http://influx/;
		}
	}
}
EOF
	setsid /usr/sbin/nginx -e "$dir/error.log" -p "$dir/" -c "$dir/nginx.conf" >"$dir/start.log" 2>&1 </dev/null &
	pid=$!
	record NGINX_PID "$pid"
	for ((i = 0; i < START_TIMEOUT * 4; i++)); do
		if ! alive "$pid"; then
			log "nginx exited during start:"
			tail -n 20 "$dir/start.log" "$dir/error.log" >&2 2>/dev/null
			return 1
		fi
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$WORK/tls/ca.pem" "https://127.0.0.1:$NGINX_PORT/ping" || true)
		[[ $code == 204 ]] && break
		sleep 0.25
	done
	if [[ $code != 204 ]]; then
		log "nginx did not answer https://127.0.0.1:$NGINX_PORT/ping with 204 within ${START_TIMEOUT}s"
		tail -n 20 "$dir/error.log" >&2 2>/dev/null
		return 1
	fi
	log "nginx up: https://127.0.0.1:$NGINX_PORT (pid $pid)"
}

# start_prometheus: a Prometheus on 127.0.0.1:$PROM_PORT that scrapes the
# exporters tests announce in $WORK/prometheus/targets/*.json (file_sd,
# picked up on change) every second and evaluates a test copy of the shipped
# rules every second. The copy differs in one way: every alert's `for:` is
# 15s instead of minutes, so that a test sees an alert fire in bounded time.
start_prometheus() {
	local dir=$WORK/prometheus pid i
	mkdir -p "$dir/targets" "$dir/rules" "$dir/data"
	sed -E 's/^([[:space:]]*for:[[:space:]]*)[0-9]+m[[:space:]]*$/\115s/' \
		"$ROOT/deploy/prometheus/loadcap.rules.yml" >"$dir/rules/loadcap.rules.yml"
	cat >"$dir/prometheus.yml" <<EOF
# generated by scripts/testenv.sh; throw-away instance, loopback only
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $dir/rules/*.yml
scrape_configs:
  - job_name: loadcap
    file_sd_configs:
      - files: ["$dir/targets/*.json"]
        refresh_interval: 1s
EOF
	promtool check config "$dir/prometheus.yml" >"$dir/check.log" 2>&1 || {
		log "promtool check config failed:"
		cat "$dir/check.log" >&2
		return 1
	}
	setsid prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
		--storage.tsdb.retention.time=1h --web.listen-address="127.0.0.1:$PROM_PORT" \
		>"$dir/prometheus.log" 2>&1 </dev/null &
	pid=$!
	record PROM_PID "$pid"
	for ((i = 0; i < START_TIMEOUT * 4; i++)); do
		if ! alive "$pid"; then
			log "prometheus exited during start; last lines of $dir/prometheus.log:"
			tail -n 20 "$dir/prometheus.log" >&2
			return 1
		fi
		[[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PROM_PORT/-/ready" || true) == 200 ]] && break
		sleep 0.25
	done
	if ! alive "$pid" || [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PROM_PORT/-/ready" || true) != 200 ]]; then
		log "prometheus did not become ready within ${START_TIMEOUT}s"
		tail -n 20 "$dir/prometheus.log" >&2
		return 1
	fi
	log "prometheus up: http://127.0.0.1:$PROM_PORT (pid $pid, targets in $dir/targets)"
}

write_env() {
	local tmp=$ENV_FILE.tmp
	cat >"$tmp" <<EOF
LOADCAP_TEST_INFLUX1=http://127.0.0.1:$INFLUX1_PORT
LOADCAP_TEST_INFLUX2=http://127.0.0.1:$INFLUX2_PORT
LOADCAP_TEST_PG=postgres://postgres@127.0.0.1:$PG_PORT/$DB?sslmode=disable
LOADCAP_TEST_PGHOST=127.0.0.1
LOADCAP_TEST_PGPORT=$PG_PORT
LOADCAP_TEST_PGUSER=postgres
LOADCAP_TEST_PGDATABASE=$DB
LOADCAP_TEST_PGBOUNCER_TX=postgres://postgres@127.0.0.1:$PGB_TX_PORT/$DB?sslmode=disable
LOADCAP_TEST_PGBOUNCER_SESSION=postgres://postgres@127.0.0.1:$PGB_SESSION_PORT/$DB?sslmode=disable
LOADCAP_TEST_TLS_DIR=$WORK/tls
LOADCAP_TEST_NGINX=https://127.0.0.1:$NGINX_PORT
LOADCAP_TEST_PROMETHEUS=http://127.0.0.1:$PROM_PORT
LOADCAP_TEST_PROMETHEUS_TARGETS=$WORK/prometheus/targets
LOADCAP_REQUIRE_SERVERS=1
EOF
	mv "$tmp" "$ENV_FILE"
}

load_state() {
	WORK= INFLUX1_PID= INFLUX2_PID= PG_PID= PG_DATA= PG_BIN= PGB_TX_PID= PGB_SESSION_PID= NGINX_PID= PROM_PID=
	[[ -f $STATE ]] || return 1
	# shellcheck disable=SC1090
	. "$STATE"
}

healthy() {
	load_state || return 1
	[[ -n $WORK && -d $WORK ]] || return 1
	ours "$INFLUX1_PID" "$WORK/" && ours "$INFLUX2_PID" "$WORK/" && ours "$PG_PID" "$WORK/" || return 1
	ours "$PGB_TX_PID" "$WORK/" && ours "$PGB_SESSION_PID" "$WORK/" && ours "$NGINX_PID" "$WORK/" || return 1
	ours "$PROM_PID" "$WORK/" || return 1
	[[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PROM_PORT/-/ready" || true) == 200 ]] || return 1
	local p
	for p in "$INFLUX1_PORT" "$INFLUX2_PORT"; do
		[[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$p/ping" || true) == 204 ]] || return 1
	done
	as_pg "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 5
}

cmd_down() {
	if ! load_state; then
		rm -f "$ENV_FILE"
		log "nothing to stop"
		return 0
	fi
	if [[ -z $WORK || $WORK != "$WORK_PREFIX"* ]]; then
		log "state file $STATE names an unexpected dir '$WORK'; not touching it"
		return 1
	fi
	stop_pid "$NGINX_PID" "$WORK/" TERM
	stop_pid "$PGB_TX_PID" "$WORK/" TERM
	stop_pid "$PGB_SESSION_PID" "$WORK/" TERM
	stop_pid "$INFLUX1_PID" "$WORK/" TERM
	stop_pid "$INFLUX2_PID" "$WORK/" TERM
	stop_pid "$PROM_PID" "$WORK/" TERM
	if [[ -z $PG_PID && -n $PG_DATA && -f $PG_DATA/postmaster.pid ]]; then
		PG_PID=$(head -n 1 "$PG_DATA/postmaster.pid") # started, pid not yet recorded
	fi
	if [[ -n $PG_PID ]] && ours "$PG_PID" "$WORK/"; then
		as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 -s stop >&2 || true
		stop_pid "$PG_PID" "$WORK/" INT # only if pg_ctl did not stop it
	fi
	rm -rf -- "$WORK"
	rm -f "$STATE" "$ENV_FILE"
	log "down"
}

cmd_up() {
	mkdir -p "$STATE_DIR"
	if [[ -f $STATE ]]; then
		if healthy; then
			write_env
			log "already up (env in $ENV_FILE)"
			return 0
		fi
		log "previous environment is stale or partial; restarting it"
		cmd_down || return 1
	fi
	ensure_packages || return 1
	check_ports_free || return 1
	WORK=$(mktemp -d "${WORK_PREFIX}XXXXXX")
	chmod 755 "$WORK"
	: >"$STATE"
	record WORK "$WORK"
	if ! {
		make_tls &&
			start_influx 1 "$INFLUX1_PORT" "$INFLUX1_RPC_PORT" &&
			start_influx 2 "$INFLUX2_PORT" "$INFLUX2_RPC_PORT" &&
			start_pg &&
			start_pgbouncer TX transaction "$PGB_TX_PORT" 20 &&
			start_pgbouncer SESSION session "$PGB_SESSION_PORT" 100 &&
			start_nginx &&
			start_prometheus
	}; then
		log "up failed; stopping what was started"
		cmd_down || true
		return 1
	fi
	write_env
	log "up (env in $ENV_FILE; throw-away data in $WORK)"
}

cmd_env() {
	[[ -f $ENV_FILE ]] || {
		log "not up: run scripts/testenv.sh up"
		return 1
	}
	sed 's/^/export /' "$ENV_FILE"
}

cmd_status() {
	if healthy; then
		echo "up: influxdb 127.0.0.1:$INFLUX1_PORT 127.0.0.1:$INFLUX2_PORT, postgres 127.0.0.1:$PG_PORT," \
			"pgbouncer 127.0.0.1:$PGB_TX_PORT (transaction) 127.0.0.1:$PGB_SESSION_PORT (session)," \
			"nginx https://127.0.0.1:$NGINX_PORT, prometheus 127.0.0.1:$PROM_PORT, data in $WORK"
	elif [[ -f $STATE ]]; then
		echo "partial or stale (run up or down)"
		return 1
	else
		echo "down"
		return 1
	fi
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
env) cmd_env ;;
status) cmd_status ;;
*)
	echo "usage: $0 up|down|env|status" >&2
	exit 2
	;;
esac
