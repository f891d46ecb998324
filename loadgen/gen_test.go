package loadgen

import (
	"bytes"
	"testing"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

func TestGeneratorDeterministicAndDecodable(t *testing.T) {
	g, err := NewGenerator(GenConfig{Measurement: "cpu", Series: 7, Tags: 3, Floats: 2, Ints: 1, Bools: 1, Strings: 1, Precision: "ns", Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 0)
	var e1, e2 lineprotocol.Encoder
	var p Point
	if err := g.Encode(&e1, &p, 5, at, 10); err != nil {
		t.Fatal(err)
	}
	if err := g.Encode(&e2, &p, 5, at, 10); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e1.Bytes(), e2.Bytes()) {
		t.Fatal("same (seed, seq) encoded differently")
	}
	var e3 lineprotocol.Encoder
	g.Encode(&e3, &p, 6, at, 10)
	if bytes.Equal(e1.Bytes(), e3.Bytes()) {
		t.Fatal("different writes encoded the same")
	}
	// Every line decodes, with the configured shape and unique timestamps.
	dec := lineprotocol.NewDecoderWithBytes(e1.Bytes())
	lines := 0
	seen := map[int64]bool{}
	for dec.Next() {
		m, err := dec.Measurement()
		if err != nil || string(m) != "cpu" {
			t.Fatalf("measurement %q, %v", m, err)
		}
		tags := 0
		for {
			k, _, err := dec.NextTag()
			if err != nil {
				t.Fatal(err)
			}
			if k == nil {
				break
			}
			tags++
		}
		fields := 0
		for {
			k, _, err := dec.NextField()
			if err != nil {
				t.Fatal(err)
			}
			if k == nil {
				break
			}
			fields++
		}
		ts, err := dec.Time(lineprotocol.Nanosecond, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if seen[ts.UnixNano()] {
			t.Fatalf("duplicate timestamp %v", ts)
		}
		seen[ts.UnixNano()] = true
		if tags != 3 || fields != 5 {
			t.Fatalf("line %d: %d tags, %d fields; want 3, 5", lines, tags, fields)
		}
		lines++
	}
	if lines != 10 {
		t.Fatalf("decoded %d lines, want 10", lines)
	}
}

func TestGeneratorZeroAllocs(t *testing.T) {
	g, err := NewGenerator(DefaultGenConfig())
	if err != nil {
		t.Fatal(err)
	}
	var enc lineprotocol.Encoder
	var p Point
	at := time.Now()
	g.Encode(&enc, &p, 0, at, 100) // warm the caller-owned buffer
	seq := uint64(1)
	allocs := testing.AllocsPerRun(200, func() {
		enc.Reset()
		g.Encode(&enc, &p, seq, at, 100)
		seq++
	})
	if allocs != 0 {
		t.Fatalf("encoding a 100-line batch allocates %.1f times, want 0", allocs)
	}
}

func TestGeneratorBadConfig(t *testing.T) {
	for _, c := range []GenConfig{
		{Series: 0, Tags: 1, Floats: 1},
		{Series: 1, Tags: 0, Floats: 1},
		{Series: 1, Tags: 1},
		{Series: 1, Tags: 1, Floats: 1, Precision: "h"},
	} {
		if _, err := NewGenerator(c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func BenchmarkEncodeBatch100(b *testing.B) {
	g, _ := NewGenerator(DefaultGenConfig())
	var enc lineprotocol.Encoder
	var p Point
	at := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		enc.Reset()
		g.Encode(&enc, &p, uint64(i), at, 100)
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "lines/s")
}
