package loadgen

import (
	"context"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/loadcap/loadcap/profiles"
)

// BenchmarkRecorder is the per-write cost of recording one result in a
// worker's histograms and counters.
func BenchmarkRecorder(b *testing.B) {
	r := newRecorder()
	now := time.Now()
	ok := Result{Lines: 100}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.record(&ok, now, now.Add(time.Duration(i%1000)*time.Microsecond), now.Add(time.Duration(i%5000)*time.Microsecond))
	}
}

func TestRecorderZeroAllocs(t *testing.T) {
	r := newRecorder()
	now := time.Now()
	ok := Result{Lines: 1}
	if a := testing.AllocsPerRun(1000, func() { r.record(&ok, now, now, now.Add(time.Millisecond)) }); a != 0 {
		t.Fatalf("recording a result allocates %.1f times, want 0", a)
	}
}

// BenchmarkPacer is the cost of finding a write's intended start time.
func BenchmarkPacer(b *testing.B) {
	for _, p := range []struct {
		name string
		p    vegeta.Pacer
	}{
		{"constant", NewPacer(50000)},
		{"linear", vegeta.LinearPacer{StartAt: vegeta.Rate{Freq: 1000, Per: time.Second}, Slope: 100}},
	} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				intendedAt(p.p, uint64(i))
			}
		})
	}
}

func TestPacerIntendedTimes(t *testing.T) {
	// Constant: write n is due at (n+1)/rate.
	p := NewPacer(1000)
	for _, n := range []uint64{0, 1, 999, 123456} {
		got, stop := intendedAt(p, n)
		if stop || got != time.Duration(n+1)*time.Millisecond {
			t.Errorf("constant 1000/s: write %d due at %s, want %s", n, got, time.Duration(n+1)*time.Millisecond)
		}
	}
	// Fractional rates stay exact: 2.5/s is one write every 400 ms.
	if got, _ := intendedAt(NewPacer(2.5), 9); got != 4*time.Second {
		t.Errorf("2.5/s: write 9 due at %s, want 4s", got)
	}
	// Linear ramp: due times increase and get closer together.
	lp := vegeta.LinearPacer{StartAt: vegeta.Rate{Freq: 100, Per: time.Second}, Slope: 100}
	prev, prevGap := time.Duration(0), time.Hour
	for n := uint64(0); n < 500; n += 50 {
		due, _ := intendedAt(lp, n)
		if due <= prev && n > 0 {
			t.Fatalf("linear: write %d due at %s, not after %s", n, due, prev)
		}
		if n > 0 {
			gap := due - prev
			if gap > prevGap+time.Millisecond {
				t.Fatalf("linear: gaps grow (%s after %s) at write %d", gap, prevGap, n)
			}
			prevGap = gap
		}
		prev = due
	}
	if a := testing.AllocsPerRun(1000, func() { intendedAt(p, 77) }); a != 0 {
		t.Fatalf("pacing allocates %.1f times per write", a)
	}
}

// BenchmarkHTTPWrite is one keep-alive write of 100 lines to a local
// HTTP/1.1 server answering 204, end to end through the driver.
func BenchmarkHTTPWrite(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(map[int]string{1: "batch1", 100: "batch100"}[batch], func(b *testing.B) {
			url := startNoContentServer(b)
			spec, _ := ParseTarget(url + "/write?db=x")
			g, _ := NewGenerator(DefaultGenConfig())
			d, err := NewHTTPDriver(spec, &profiles.Client{Conn: profiles.ConnPool, PoolSize: 1, IdleSize: 1}, g, DriverOptions{Batch: batch, Timeout: 5 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			s := d.NewSession()
			ctx := context.Background()
			now := time.Now()
			s.Write(ctx, 0, now)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if r := s.Write(ctx, uint64(i), now); r.Class != "" {
					b.Fatal(r.Err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}

func TestHTTPWriteZeroAllocs(t *testing.T) {
	url := startNoContentServer(t)
	spec, _ := ParseTarget(url + "/write?db=x")
	g, _ := NewGenerator(DefaultGenConfig())
	d, err := NewHTTPDriver(spec, &profiles.Client{Conn: profiles.ConnPool, PoolSize: 1, IdleSize: 1}, g, DriverOptions{Batch: 100, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s := d.NewSession()
	now := time.Now()
	s.Write(context.Background(), 0, now)
	seq := uint64(1)
	a := testing.AllocsPerRun(200, func() {
		if r := s.Write(context.Background(), seq, now); r.Class != "" {
			t.Fatal(r.Err)
		}
		seq++
	})
	// The test server runs in this process too; it allocates nothing per
	// request either, so any allocation here is the client's.
	if a != 0 {
		t.Fatalf("a keep-alive write of 100 lines allocates %.1f times, want 0", a)
	}
}
