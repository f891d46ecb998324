// Package testservers hands tests the real servers that scripts/testenv.sh
// starts for `make test`: two InfluxDB 1.x instances and one PostgreSQL, all
// on 127.0.0.1, described by environment variables:
//
//	LOADCAP_TEST_INFLUX1     http://127.0.0.1:18086
//	LOADCAP_TEST_INFLUX2     http://127.0.0.1:18087
//	LOADCAP_TEST_PG          postgres://postgres@127.0.0.1:15432/loadcap?sslmode=disable
//	LOADCAP_REQUIRE_SERVERS  1 under `make test`
//
// Influx and Postgres return those addresses. When a variable is unset the
// test is skipped, unless LOADCAP_REQUIRE_SERVERS=1, in which case it fails:
// `make test` can never silently skip the real-server tests. To run such a
// test by hand:
//
//	scripts/testenv.sh up
//	eval "$(scripts/testenv.sh env)"
//	go test -run TestX ./some/package
//	scripts/testenv.sh down
//
// Packages' tests run concurrently against the same servers, so a test that
// counts what it wrote should use a database of its own (InfluxTempDB) or a
// table of its own rather than the shared `loadcap` database.
//
// The remaining helpers query those servers over HTTP (InfluxDB's /query) and
// pgx (PostgreSQL); every one fails the test on error and is bounded in time.
package testservers
