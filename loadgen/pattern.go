package loadgen

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Phase is one part of a workload pattern: writing at the run's rate, or
// idle (no writes at all, so pooled connections sit idle).
type Phase struct {
	Write    bool
	Duration time.Duration
}

// ParsePattern parses a pattern such as "write 10s, idle 90s, write 10s".
// A pattern needs at least one write phase: one that only idles would run
// and measure nothing.
func ParsePattern(s string) ([]Phase, error) {
	var out []Phase
	for _, part := range strings.Split(s, ",") {
		f := strings.Fields(part)
		if len(f) != 2 {
			return nil, fmt.Errorf("bad --pattern %q: each phase is \"write DURATION\" or \"idle DURATION\", got %q", s, strings.TrimSpace(part))
		}
		d, err := time.ParseDuration(f[1])
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("bad --pattern %q: bad duration %q", s, f[1])
		}
		switch f[0] {
		case "write":
			out = append(out, Phase{Write: true, Duration: d})
		case "idle":
			out = append(out, Phase{Duration: d})
		default:
			return nil, fmt.Errorf("bad --pattern %q: unknown phase %q (want write or idle)", s, f[0])
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bad --pattern %q: no phase", s)
	}
	for _, p := range out {
		if p.Write {
			return out, nil
		}
	}
	return nil, fmt.Errorf("bad --pattern %q: no write phase (want at least one \"write DURATION\")", s)
}

// PatternWrites is the number of writes the phases make at perSecond: the
// writes PatternPacer paces before it stops.
func PatternWrites(ps []Phase, perSecond float64) uint64 {
	var n uint64
	for _, p := range ps {
		n += phaseWrites(p, perSecond)
	}
	return n
}

// phaseWrites is the number of writes of one phase at perSecond (none
// when idle).
func phaseWrites(p Phase, perSecond float64) uint64 {
	if !p.Write || !(perSecond > 0) {
		return 0
	}
	return uint64(math.Floor(p.Duration.Seconds() * perSecond))
}

// PatternDuration is the total length of the phases.
func PatternDuration(ps []Phase) time.Duration {
	var d time.Duration
	for _, p := range ps {
		d += p.Duration
	}
	return d
}

// PatternPacer is a vegeta.Pacer that writes at PerSecond during the
// write phases and not at all during idle ones. Within a write phase that
// starts at T, its m-th write is due at T + (m+1)/Rate, as with vegeta's
// constant pacer.
type PatternPacer struct {
	Phases []Phase
	// PerSecond is the write rate during write phases.
	PerSecond float64
}

// due returns when write n is due and whether there is such a write.
func (p PatternPacer) due(n uint64) (time.Duration, bool) {
	var start time.Duration
	for _, ph := range p.Phases {
		if ph.Write {
			k := phaseWrites(ph, p.PerSecond)
			if n < k {
				return start + time.Duration(float64(n+1)/p.PerSecond*float64(time.Second)), true
			}
			n -= k
		}
		start += ph.Duration
	}
	return 0, false
}

// WriteTime returns how long the write phases last within the first d of
// the pattern.
func (p PatternPacer) WriteTime(d time.Duration) time.Duration {
	var start, w time.Duration
	for _, ph := range p.Phases {
		if start >= d {
			break
		}
		if ph.Write {
			w += min(ph.Duration, d-start)
		}
		start += ph.Duration
	}
	return w
}

// Pace implements vegeta.Pacer.
func (p PatternPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if !(p.PerSecond > 0) {
		return 0, true
	}
	d, ok := p.due(hits)
	if !ok {
		return 0, true
	}
	if d > elapsed {
		return d - elapsed, false
	}
	return 0, false
}

// Rate implements vegeta.Pacer: PerSecond during write phases, 0 when idle.
func (p PatternPacer) Rate(elapsed time.Duration) float64 {
	var start time.Duration
	for _, ph := range p.Phases {
		if elapsed < start+ph.Duration {
			if ph.Write {
				return p.PerSecond
			}
			return 0
		}
		start += ph.Duration
	}
	return 0
}
