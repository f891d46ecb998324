package faults

import (
	"math"
	"testing"
)

// Pick fails about the asked fraction of writes, the same ones for the same
// seed, other ones for another seed.
func TestPick(t *testing.T) {
	const n = 100_000
	for _, rate := range []float64{0, 0.01, 0.25, 0.5, 1} {
		fails, same, other := 0, 0, 0
		for i := uint64(1); i <= n; i++ {
			a := Pick(rate, 7, i)
			if a {
				fails++
			}
			if a == Pick(rate, 7, i) {
				same++
			}
			if a != Pick(rate, 8, i) {
				other++
			}
		}
		if got := float64(fails) / n; math.Abs(got-rate) > 0.01 {
			t.Errorf("rate %v: %.4f of writes failed", rate, got)
		}
		if same != n {
			t.Errorf("rate %v: not a pure function of seed and sequence", rate)
		}
		if rate > 0 && rate < 1 && other == 0 {
			t.Errorf("rate %v: another seed picks the same writes", rate)
		}
	}
}
