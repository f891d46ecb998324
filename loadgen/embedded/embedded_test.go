package embedded_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/embedded"
)

// Both sinks start through Start: their Target is a target loadcap parses
// to the right kind, a write shows in Progress and Summary, and Shutdown
// and Close stop them.
func TestStartBoth(t *testing.T) {
	ctx := context.Background()
	write := map[string]func(t *testing.T, target string){
		loadgen.KindEmbedded: func(t *testing.T, target string) {
			r, err := http.Post(target, "text/plain", strings.NewReader("m v=1\n"))
			if err != nil || r.StatusCode != http.StatusNoContent {
				t.Fatalf("write: %v %v", r, err)
			}
			r.Body.Close()
		},
		loadgen.KindEmbeddedPG: func(t *testing.T, target string) {
			c, err := pgx.Connect(ctx, target)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			if _, err := c.Exec(ctx, "CREATE TABLE m (v bigint); INSERT INTO m VALUES (1)", pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatal(err)
			}
		},
	}
	wantKind := map[string]string{loadgen.KindEmbedded: loadgen.KindInfluxV1, loadgen.KindEmbeddedPG: loadgen.KindPostgres}
	for kind, w := range write {
		t.Run(kind, func(t *testing.T) {
			s, err := embedded.Start(kind, "127.0.0.1:0", embedded.Options{Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			spec, err := loadgen.ParseTarget(s.Target())
			if err != nil || spec.Kind != wantKind[kind] || spec.Addr != s.Addr().String() {
				t.Fatalf("target %q: %+v, %v; want kind %s at %s", s.Target(), spec, err, wantKind[kind], s.Addr())
			}
			now := time.Now()
			if _, changed := s.Progress(now); changed {
				t.Fatal("progress before any write")
			}
			before := s.Summary()
			w(t, s.Target())
			// The sink sees the client's close after the write returns (a
			// CI run read active=1, then active=0 as "a change without a
			// write"): let its counters settle first.
			for i, prev := 0, ""; i < 100 && s.Summary() != prev; i++ {
				prev = s.Summary()
				time.Sleep(20 * time.Millisecond)
			}
			line, changed := s.Progress(now.Add(time.Second))
			if !changed || line == "" || s.Summary() == before {
				t.Fatalf("after a write: progress %q changed %v, summary %q (was %q)", line, changed, s.Summary(), before)
			}
			if _, changed := s.Progress(now.Add(2 * time.Second)); changed {
				t.Fatal("progress changed without a write")
			}
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := s.Shutdown(sctx); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := embedded.Start("influx", "127.0.0.1:0", embedded.Options{}); err == nil {
		t.Fatal("an unknown kind started")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []embedded.Options{{Latency: -1}, {ErrorRate: 2}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	if err := (embedded.Options{Latency: time.Millisecond, ErrorRate: 1, Seed: -3}).Validate(); err != nil {
		t.Error(err)
	}
}
