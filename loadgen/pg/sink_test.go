package pg_test

import (
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/loadgen/pg"
	"github.com/loadcap/loadcap/loadgen/pgsink"
)

// Each mode against the embedded sink: the rows it counted equal lines_ok.
func TestModesSink(t *testing.T) {
	s := testservers.PGSink(t, pgsink.Options{})
	for _, mode := range []string{"insert", "values", "copy"} {
		t.Run(mode, func(t *testing.T) {
			table := "sink_" + mode
			before := s.Stats().Rows
			_, tr := drive(t, withQuery(s.URL(), "table="+table+"&mode="+mode), "keepalive", 200, time.Second, 37)
			if tr.Failed != 0 || tr.OK != 200 {
				t.Fatalf("writes ok=%d failed=%d errors=%v codes=%v first=%v", tr.OK, tr.Failed, tr.Errors, tr.Codes, tr.FirstErrors)
			}
			if got := s.TableRows(table); got != tr.Lines || got != 200*37 {
				t.Fatalf("sink rows %d, lines_ok %d, want %d", got, tr.Lines, 200*37)
			}
			if d := s.Stats().Rows - before; d != tr.Lines {
				t.Fatalf("sink stats rows delta %d, lines_ok %d", d, tr.Lines)
			}
		})
	}
}

// values mode splits a write above 65,535 parameters, says so, and every
// row still arrives.
func TestValuesSplitSink(t *testing.T) {
	for _, profile := range []string{"keepalive", "close-client"} { // named and unnamed statements
		s := testservers.PGSink(t, pgsink.Options{})
		d, tr := drive(t, withQuery(s.URL(), "table=split&mode=values"), profile, 4, time.Second, 20000)
		if tr.Failed != 0 || tr.Lines != 4*20000 || s.TableRows("split") != tr.Lines {
			t.Fatalf("%s: ok=%d failed=%d lines=%d sink=%d first=%v", profile, tr.OK, tr.Failed, tr.Lines, s.TableRows("split"), tr.FirstErrors)
		}
		checkSplitNote(t, d)
	}
}

// checkSplitNote asserts the driver reports the split, in a note that does
// not name the target (run.Execute prefixes each note with it).
func checkSplitNote(t *testing.T, d *pg.Driver) {
	notes := strings.Join(d.Notes(), "\n")
	want := "values mode: a write of 20000 rows x 10 columns exceeds PostgreSQL's 65535 bind parameters; each write is sent as 4 INSERT statements of at most 6553 rows, pipelined"
	// Beside it, only the execution mode's note.
	if len(d.Notes()) != 2 || d.Notes()[0] != want || !strings.HasPrefix(d.Notes()[1], "SQL execution mode exec ") {
		t.Fatalf("notes %q: want exactly %q", notes, want)
	}
}

// Server-side rejections are data: the run goes on, counting SQLSTATEs.
func TestTooManyConnectionsIsData(t *testing.T) {
	s := testservers.PGSink(t, pgsink.Options{MaxConnections: 2, Latency: 20 * time.Millisecond})
	_, tr := drive(t, withQuery(s.URL(), "table=limit"), "close-client", 200, time.Second, 5)
	if tr.Codes["53300"] == 0 || tr.OK == 0 {
		t.Fatalf("want some ok writes and some 53300: ok=%d failed=%d errors=%v codes=%v", tr.OK, tr.Failed, tr.Errors, tr.Codes)
	}
	if tr.Errors["sql"] != tr.Codes["53300"] {
		t.Fatalf("errors %v vs codes %v", tr.Errors, tr.Codes)
	}
	if tr.Lines != s.TableRows("limit") {
		t.Fatalf("lines_ok %d, sink rows %d", tr.Lines, s.TableRows("limit"))
	}
}
