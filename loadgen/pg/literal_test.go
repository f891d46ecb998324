package pg

import (
	"math"
	"testing"
	"time"

	"github.com/loadcap/loadcap/loadgen"
)

// SQL literals of the simple protocol: quotes doubled, timestamps in UTC
// to the microsecond, non-finite floats quoted and cast, booleans as words.
func TestAppendLiteral(t *testing.T) {
	gc := loadgen.DefaultGenConfig()
	gen, err := loadgen.NewGenerator(gc)
	if err != nil {
		t.Fatal(err)
	}
	e := rowEncoder{gen: gen}
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))
	p := &loadgen.Point{TagValues: []string{"it's"}, Values: []uint64{math.Float64bits(1.5), math.Float64bits(math.NaN()), uint64(1<<64 - 7), 1}, Time: at}
	cases := []struct {
		col  Column
		want string
	}{
		{Column{kind: kindTime}, `'2026-01-02 02:04:05.123456Z'::timestamptz`},
		{Column{kind: kindTag, index: 0}, `'it''s'`},
		{Column{kind: int(loadgen.FieldFloat), index: 0}, `1.5`},
		{Column{kind: int(loadgen.FieldFloat), index: 1}, `'NaN'::float8`},
		{Column{kind: int(loadgen.FieldInt), index: 2}, `-7`},
		{Column{kind: int(loadgen.FieldBool), index: 3}, `true`},
	}
	for _, c := range cases {
		if got := string(e.appendLiteral(nil, &c.col, p)); got != c.want {
			t.Errorf("kind %d: %s, want %s", c.col.kind, got, c.want)
		}
	}
	if got := string(appendQuoted(nil, "a''b")); got != `'a''''b'` {
		t.Errorf("appendQuoted: %s", got)
	}
}
