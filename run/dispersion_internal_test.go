package run

import (
	"math"
	"testing"

	"github.com/loadcap/loadcap/results"
)

func timeline(targets []string, counts ...[]int64) []results.Interval {
	var out []results.Interval
	for i := range counts[0] {
		for j, name := range targets {
			out = append(out, results.Interval{TMS: int64(i+1) * 1000, Target: name, NewConns: counts[j][i]})
		}
	}
	return out
}

func TestChurnDispersion(t *testing.T) {
	// First and last intervals are left out: 99 is the warm-up, 50 partial.
	steady := []int64{99, 2, 2, 2, 2, 2, 2, 50}
	bursty := []int64{99, 0, 0, 8, 0, 0, 4, 50} // mean 2, variance 11.2
	for _, c := range []struct {
		name   string
		doc    results.Document
		shared bool
		want   float64
	}{
		{"regular openings", results.Document{Timeline: timeline([]string{"a"}, steady)}, false, 0},
		{"bursts", results.Document{Timeline: timeline([]string{"a"}, bursty)}, false, 5.6},
		{"per target, averaged", results.Document{Timeline: timeline([]string{"a", "b"}, steady, bursty)}, false, 2.8},
		// One shared pool sees the sum: 2,2,10,2,2,6 (mean 4, variance 11.2).
		{"shared pool, summed", results.Document{Timeline: timeline([]string{"a", "b"}, steady, bursty)}, true, 2.8},
		{"too short", results.Document{Timeline: timeline([]string{"a"}, bursty[:5])}, false, 0},
		{"no churn", results.Document{Timeline: timeline([]string{"a"}, []int64{3, 0, 0, 0, 0, 0, 0, 0})}, false, 0},
	} {
		if got := churnDispersion(&c.doc, c.shared); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: dispersion %v, want %v", c.name, got, c.want)
		}
	}
}
