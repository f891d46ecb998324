package testservers

import (
	"testing"

	"github.com/loadcap/loadcap/loadgen/pgsink"
)

// PGSink starts the embedded PostgreSQL-wire sink on a free loopback port
// with opts, closed when the test ends.
func PGSink(t testing.TB, opts pgsink.Options) *pgsink.Server {
	t.Helper()
	s, err := pgsink.Start("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
