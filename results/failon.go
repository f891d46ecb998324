package results

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/loadcap/loadcap/capacity"
)

// FailCondition is one condition of --fail-on, such as "errors>1%" or
// "p99>250ms". It holds for a run when it holds for any of its targets.
type FailCondition struct {
	// Raw is the condition as given, for messages.
	Raw    string
	Metric string
	Op     string
	// Value is a count, a rate in writes/s, a latency in ms or, when
	// Percent is set, a percentage.
	Value   float64
	Percent bool
}

// FailOnError is a --fail-on value that does not parse: bad user input,
// its one line naming the value.
type FailOnError struct{ Err error }

func (e *FailOnError) Error() string { return e.Err.Error() }
func (e *FailOnError) Unwrap() error { return e.Err }

// failMetrics lists the metrics of --fail-on and what their values are.
var failMetrics = map[string]string{
	"errors":      "count", // failed writes; with %: of the writes issued
	"port_errors": "count", // EADDRNOTAVAIL + EADDRINUSE; with %: of the writes issued
	"timeouts":    "count", // class timeout; with %: of the writes issued
	"late":        "count", // late starts; with %: of the writes issued
	"achieved":    "rate",  // writes/s started; with %: of the rate asked
	"p50":         "latency",
	"p90":         "latency",
	"p99":         "latency",
	"p999":        "latency",
	"max":         "latency",
}

// ParseFailOn parses a --fail-on value: conditions separated by commas,
// each METRIC OP VALUE with OP one of > >= < <= and METRIC one of errors,
// port_errors, timeouts, late (a count, or a percentage of the writes
// issued), achieved (writes/s, or a percentage of the rate asked) and p50,
// p90, p99, p999, max (a latency with its unit: 250ms, 1.5s, 800us). A bad
// condition is a *FailOnError naming it.
func ParseFailOn(s string) ([]FailCondition, error) {
	var out []FailCondition
	for _, raw := range strings.Split(s, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		c, err := parseFailCondition(raw)
		if err != nil {
			return nil, &FailOnError{Err: fmt.Errorf("bad --fail-on condition %q: %w", raw, err)}
		}
		out = append(out, c)
	}
	if len(out) == 0 && strings.TrimSpace(s) != "" {
		return nil, &FailOnError{Err: fmt.Errorf("bad --fail-on %q: no condition", s)}
	}
	return out, nil
}

func parseFailCondition(raw string) (FailCondition, error) {
	i := strings.IndexAny(raw, "<>")
	if i < 0 {
		return FailCondition{}, fmt.Errorf("want METRIC>VALUE or METRIC<VALUE, e.g. errors>1%%, p99>250ms, achieved<99%%")
	}
	c := FailCondition{Raw: raw, Metric: strings.ToLower(strings.TrimSpace(raw[:i]))}
	op := raw[i : i+1]
	rest := raw[i+1:]
	if strings.HasPrefix(rest, "=") {
		op += "="
		rest = rest[1:]
	}
	c.Op = op
	kind, ok := failMetrics[c.Metric]
	if !ok {
		return FailCondition{}, fmt.Errorf("unknown metric %q: want errors, port_errors, timeouts, late, achieved, p50, p90, p99, p999 or max", c.Metric)
	}
	v := strings.TrimSpace(rest)
	if v == "" {
		return FailCondition{}, fmt.Errorf("no value after %s", op)
	}
	switch kind {
	case "latency":
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return FailCondition{}, fmt.Errorf("bad latency %q: want a duration with its unit such as 250ms or 1.5s", v)
		}
		c.Value = float64(d) / float64(time.Millisecond)
	default:
		if strings.HasSuffix(v, "%") {
			c.Percent = true
			v = strings.TrimSpace(strings.TrimSuffix(v, "%"))
		}
		var f float64
		var err error
		if !c.Percent && kind == "rate" {
			f, err = capacity.ParseRate(v)
		} else {
			f, err = strconv.ParseFloat(v, 64)
		}
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return FailCondition{}, fmt.Errorf("bad value %q: want a non-negative number", v)
		}
		if c.Percent && f > 100 {
			return FailCondition{}, fmt.Errorf("bad value %q%%: want at most 100%%", v)
		}
		c.Value = f
	}
	return c, nil
}

// CheckFailOn returns, for each condition that holds for doc, one phrase saying
// which target and what was measured. An empty result means the run passed.
func CheckFailOn(conds []FailCondition, doc *Document) []string {
	var out []string
	for _, c := range conds {
		for _, t := range doc.Targets {
			got, unit, ok := c.measure(doc, &t)
			if !ok || !c.compare(got) {
				continue
			}
			out = append(out, fmt.Sprintf("%s holds: %s %s", c.Raw, t.Name, unit))
			break
		}
	}
	return out
}

// measure returns the condition's metric for one target, in the
// condition's unit, and a phrase describing it.
func (c FailCondition) measure(doc *Document, t *Target) (float64, string, bool) {
	writes := t.Writes
	if writes == 0 {
		writes = t.WritesOK + t.WritesFailed
	}
	count := func(name string, n int64) (float64, string, bool) {
		if !c.Percent {
			return float64(n), fmt.Sprintf("%s %d", name, n), true
		}
		if writes == 0 {
			return 0, "", false
		}
		p := 100 * float64(n) / float64(writes)
		return p, fmt.Sprintf("%s %.2f %% (%d of %d writes)", name, p, n, writes), true
	}
	switch c.Metric {
	case "errors":
		return count("failed", t.WritesFailed)
	case "port_errors":
		var n int64
		for cls, v := range t.Errors {
			if IsPortError(cls) {
				n += v
			}
		}
		return count("port exhaustion errors", n)
	case "timeouts":
		return count("timeouts", t.Errors[ClassTimeout])
	case "late":
		return count("late starts", t.LateStarts)
	case "achieved":
		if !c.Percent {
			return t.AchievedRate, fmt.Sprintf("achieved %.1f writes/s", t.AchievedRate), true
		}
		if doc.Config.Rate <= 0 {
			return 0, "", false
		}
		p := 100 * t.AchievedRate / doc.Config.Rate
		return p, fmt.Sprintf("achieved %.1f writes/s, %.2f %% of %.1f asked", t.AchievedRate, p, doc.Config.Rate), true
	}
	if t.WritesOK+t.WritesFailed == 0 {
		return 0, "", false
	}
	var ms float64
	switch c.Metric {
	case "p50":
		ms = t.LatencyMS.P50
	case "p90":
		ms = t.LatencyMS.P90
	case "p99":
		ms = t.LatencyMS.P99
	case "p999":
		ms = t.LatencyMS.P999
	case "max":
		ms = t.LatencyMS.Max
	default:
		return 0, "", false
	}
	return ms, fmt.Sprintf("%s %.2f ms", c.Metric, ms), true
}

func (c FailCondition) compare(got float64) bool {
	switch c.Op {
	case ">":
		return got > c.Value
	case ">=":
		return got >= c.Value
	case "<":
		return got < c.Value
	case "<=":
		return got <= c.Value
	}
	return false
}
