package pg_test

import (
	"testing"
	"time"
)

// Each mode against real PostgreSQL: count(*) equals the lines loadcap says
// were accepted, and nothing failed.
func TestModesRealPostgres(t *testing.T) {
	dsn := realPG(t)
	c := sqlConn(t, dsn)
	for _, mode := range []string{"insert", "values", "copy"} {
		t.Run(mode, func(t *testing.T) {
			table := uniqueTable("modes_" + mode)
			dropTable(t, dsn, table)
			_, tr := drive(t, withQuery(dsn, "table="+table+"&mode="+mode), "keepalive", 100, time.Second, 50)
			if tr.Failed != 0 || tr.OK != 100 {
				t.Fatalf("writes ok=%d failed=%d errors=%v codes=%v first=%v", tr.OK, tr.Failed, tr.Errors, tr.Codes, tr.FirstErrors)
			}
			if got := count(t, c, table); got != tr.Lines || got != 5000 {
				t.Fatalf("count(*) = %d, lines_ok = %d, want 5000", got, tr.Lines)
			}
		})
	}
}
