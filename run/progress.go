package run

import (
	"fmt"
	"strings"
	"time"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/results"
)

// ProgressLine formats one live progress line: per target the rate, ok,
// errors and p99 of the last interval, and the TIME_WAIT count (tw < 0 when
// the sampler is not running).
func ProgressLine(t loadgen.Tick, tw int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6.1fs", t.Elapsed.Seconds())
	for _, tt := range t.Targets {
		fmt.Fprintf(&b, " | %s %7.1f/s ok %d err %d p99 %s", tt.Name, tt.Rate, tt.OK, tt.Failed, fmtDur(tt.P99))
		if len(tt.Interval.Errors) > 0 {
			c := results.SortedClasses(tt.Interval.Errors)[0]
			fmt.Fprintf(&b, " (%s)", c)
		}
	}
	if tw >= 0 {
		fmt.Fprintf(&b, " | TIME_WAIT %d", tw)
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
}
