package results_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/loadcap/loadcap/results"
)

// ParseFailOn: the grammar and the evaluation of --fail-on conditions.
func TestParseFailOn(t *testing.T) {
	doc := &results.Document{
		ID:     "x",
		Config: results.Config{Rate: 1000},
		Targets: []results.Target{
			{Name: "a", Writes: 1000, WritesOK: 1000, AchievedRate: 999, LatencyMS: results.Latency{P50: 1, P90: 5, P99: 12, P999: 20, Max: 40}},
			{Name: "b", Writes: 1000, WritesOK: 980, WritesFailed: 20, AchievedRate: 940,
				Errors:    map[string]int64{"EADDRNOTAVAIL": 5, "timeout": 15},
				LatencyMS: results.Latency{P50: 1, P90: 2, P99: 300, P999: 900, Max: 1200}, LateStarts: 30},
		},
	}
	cases := []struct {
		cond string
		hold bool
	}{
		{"errors>1%", true},     // b: 2 %
		{"errors>2%", false},    // b: exactly 2 %
		{"errors>=2%", true},    //
		{"errors>0", true},      //
		{"errors>20", false},    //
		{"port_errors>0", true}, // b: 5 EADDRNOTAVAIL
		{"port_errors>0.5%", false},
		{"timeouts>=15", true},
		{"late>2%", true},
		{"p99>250ms", true},
		{"p99 > 0.5s", false},
		{"p50>1ms", false},
		{"max>1s", true},
		{"p999<1ms", false},
		{"achieved<99%", true}, // b: 94 %
		{"achieved<90%", false},
		{"achieved<950", true}, // writes/s
		{"achieved<0.5k", false},
		{"ERRORS>1%", true},
	}
	for _, c := range cases {
		conds, err := results.ParseFailOn(c.cond)
		if err != nil || len(conds) != 1 {
			t.Errorf("%q: %v %v", c.cond, conds, err)
			continue
		}
		held := results.CheckFailOn(conds, doc)
		if got := len(held) > 0; got != c.hold {
			t.Errorf("%q: holds %v (%v), want %v", c.cond, got, held, c.hold)
		}
		if len(held) > 0 && (!strings.Contains(held[0], c.cond) || !strings.Contains(held[0], "b")) {
			t.Errorf("%q: message %q names neither the condition nor the target", c.cond, held[0])
		}
	}
	conds, err := results.ParseFailOn("errors>1%, p99>250ms ,port_errors>0,achieved<90%")
	if err != nil || len(conds) != 4 {
		t.Fatalf("%v %v", conds, err)
	}
	if held := results.CheckFailOn(conds, doc); len(held) != 3 {
		t.Errorf("held %v, want errors, p99 and port_errors", held)
	}
	if c, err := results.ParseFailOn(""); err != nil || len(c) != 0 {
		t.Errorf("empty --fail-on: %v %v", c, err)
	}
	for _, bad := range []string{"errors", "errors>", "errors>>1", "errors=1", "bogus>1", "p99>5", "p99>-1ms",
		"errors>-1", "errors>nan", "errors>inf%", "errors>101%", ",", "achieved<0", "errors>1%%"} {
		_, err := results.ParseFailOn(bad)
		var fe *results.FailOnError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), "--fail-on") {
			t.Errorf("%q: got %v, want a FailOnError naming --fail-on", bad, err)
		}
	}
	// A target with no writes makes no percentage nor latency hold, but
	// it achieved nothing of the rate asked.
	empty := &results.Document{ID: "e", Config: results.Config{Rate: 10}, Targets: []results.Target{{Name: "z"}}}
	if held := results.CheckFailOn(conds, empty); len(held) != 1 || !strings.HasPrefix(held[0], "achieved<90% holds: z") {
		t.Errorf("empty target: %v", held)
	}
}
