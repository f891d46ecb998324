// Package faults is the error injection of the embedded sinks
// (loadgen/sink and loadgen/pgsink): which writes fail is a pure function
// of a seed and the order in which writes arrive, so a run is
// reproducible.
package faults

// Pick reports whether write number seq fails at error rate rate (0..1)
// with seed: a splitmix64 hash of (seed, seq) compared with rate.
func Pick(rate float64, seed int64, seq uint64) bool {
	if rate <= 0 {
		return false
	}
	if rate >= 1 {
		return true
	}
	x := uint64(seed) + seq*0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11)/(1<<53) < rate
}
