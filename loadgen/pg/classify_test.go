package pg

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/pgsink"
)

// A batch on a connection the server closed can come back from pgconn as
// "conn closed" alone (MultiResultReader.NextResult drops the read error):
// it is the server's close, classified EOF like the read error it hides,
// not "other".
func TestClassifyConnClosedIsEOF(t *testing.T) {
	s, err := pgsink.Start("127.0.0.1:0", pgsink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, s.URL())
	if err != nil {
		t.Fatal(err)
	}
	pc.Close(ctx)
	var b pgconn.Batch
	b.ExecParams("select 1", nil, nil, nil, nil)
	_, err = runBatch(ctx, pc, &b)
	if !errors.Is(err, pgconn.ErrConnClosed) {
		t.Fatalf("batch on a closed connection: %v, want pgconn's conn closed", err)
	}
	if class, code := classify(err); class != loadgen.ClassEOF || code != "" {
		t.Fatalf("classify(%v) = %q %q, want EOF", err, class, code)
	}
}
