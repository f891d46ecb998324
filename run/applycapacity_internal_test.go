package run

import (
	"strings"
	"testing"

	"github.com/loadcap/loadcap/profiles"
	"github.com/loadcap/loadcap/results"
)

func ptr(v float64) *float64 { return &v }

// closeClientExplanation is the model's explanation for close-client with
// the Linux defaults toward a remote target.
const closeClientExplanation = "client closes; each port stays in TIME_WAIT for 60 s (tcp_tw_reuse=2 applies to loopback only): 28232 ports per target / 60 s / 1 new conns per write = 470.5 writes/s"

// applyCapacity sets predicted_exhaustion_rate from the measured new
// connections per write and the sysctls in force, and headroom = predicted
// / achieved; the summary's sentence says the same figures.
func TestApplyCapacityHeadroom(t *testing.T) {
	linuxDefault, err := profiles.LoadSysctl("linux-default")
	if err != nil {
		t.Fatal(err)
	}
	twReuse, err := profiles.LoadSysctl("tw-reuse")
	if err != nil {
		t.Fatal(err)
	}
	target := func(name string, writes, conns int64) results.Target {
		return results.Target{Name: name, URL: "http://" + name + "/write?db=loadcap", WritesOK: writes, NewConnections: conns}
	}
	cases := []struct {
		what      string
		client    string
		sysctls   map[string]string
		targets   []results.Target
		achieved  float64
		predicted *float64 // nil: does not run out
		headroom  *float64
		sentence  string // prefix
	}{
		{
			// 28232 ports / 60 s = 470.53 writes/s; 470.53 / 350 = 1.34.
			"close-client, defaults", "close-client", linuxDefault.Map(),
			[]results.Target{target("127.0.0.1:8086", 3500, 3500)}, 350, ptr(470.53), ptr(1.34),
			"at 350.0 writes/s this client uses 74 % of its port budget toward 127.0.0.1:8086; it runs out at 470.5 writes/s (" + closeClientExplanation + ")",
		},
		{
			// Measured 0.5 new connections per write doubles the rate:
			// 941.07 / 350 = 2.69.
			"half the writes open a connection", "close-client", linuxDefault.Map(),
			[]results.Target{target("127.0.0.1:8086", 3500, 1750)}, 350, ptr(941.07), ptr(2.69),
			"at 350.0 writes/s this client uses 37 % of its port budget toward 127.0.0.1:8086; it runs out at 941.1 writes/s",
		},
		{
			// bind before connect, two targets: one shared pool, half each:
			// 235.27 / 200 = 1.18.
			"close-client-bind, two targets", "close-client-bind", linuxDefault.Map(),
			[]results.Target{target("10.0.0.1:8086", 2000, 2000), target("10.0.0.2:8086", 2000, 2000)}, 200, ptr(235.27), ptr(1.18),
			"at 200.0 writes/s this client uses 85 % of its port budget toward each target; it runs out at 235.3 writes/s",
		},
		{
			// tcp_tw_reuse=1: ports back after 1 s, 28232 / 350 = 80.66.
			"close-client, tw-reuse", "close-client", twReuse.Map(),
			[]results.Target{target("127.0.0.1:8086", 3500, 3500)}, 350, ptr(28232), ptr(80.66),
			"at 350.0 writes/s this client uses 1 % of its port budget toward 127.0.0.1:8086; it runs out at 28.2k writes/s",
		},
		{
			// Above the limit: headroom below 1.
			"close-client, over", "close-client", linuxDefault.Map(),
			[]results.Target{target("127.0.0.1:8086", 6000, 6000)}, 600, ptr(470.53), ptr(0.78),
			"at 600.0 writes/s this client uses 128 % of its port budget",
		},
		{
			// No write achieved: a prediction but no headroom.
			"nothing achieved", "close-client", linuxDefault.Map(),
			[]results.Target{target("127.0.0.1:8086", 0, 0)}, 0, ptr(28232.0 / 60 / 1), nil,
			"",
		},
		{
			// A pool of 64 that opened 4 connections only warmed up: no
			// exhaustion from the write rate, no headroom.
			"keepalive", "keepalive", linuxDefault.Map(),
			[]results.Target{target("127.0.0.1:8086", 3500, 4)}, 350, nil, nil,
			"at 350.0 writes/s (0 new connections per write) this client does not run out of ports toward 127.0.0.1:8086: keep-alive pool",
		},
		{
			// The server closes first: TIME_WAIT is the server's.
			"close-server", "close-server", linuxDefault.Map(),
			[]results.Target{target("127.0.0.1:8086", 3500, 3500)}, 350, nil, nil,
			"at 350.0 writes/s (1 new connections per write) this client does not run out of ports toward 127.0.0.1:8086: no client-side TIME_WAIT",
		},
	}
	for _, c := range cases {
		cl, err := profiles.LoadClient(c.client)
		if err != nil {
			t.Fatal(err)
		}
		doc := &results.Document{AchievedRate: c.achieved, Targets: c.targets}
		applyCapacity(doc, &plan{client: cl}, c.sysctls, false)
		got := doc.Capacity
		if !eqPtr(got.PredictedExhaustionRate, roundPtr(c.predicted)) || !eqPtr(got.Headroom, c.headroom) {
			t.Errorf("%s: predicted %v headroom %v, want %v and %v", c.what, str(got.PredictedExhaustionRate), str(got.Headroom), str(roundPtr(c.predicted)), str(c.headroom))
			continue
		}
		// headroom is predicted / achieved, to two decimals.
		if got.Headroom != nil {
			if want := round2(*got.PredictedExhaustionRate / c.achieved); abs(*got.Headroom-want) > 0.0051 {
				t.Errorf("%s: headroom %v is not predicted %v / achieved %v", c.what, *got.Headroom, *got.PredictedExhaustionRate, c.achieved)
			}
		}
		if s := results.CapacitySentence(doc); !strings.HasPrefix(s, c.sentence) {
			t.Errorf("%s: sentence\n %s\nwant prefix\n %s", c.what, s, c.sentence)
		}
	}
}

func roundPtr(p *float64) *float64 {
	if p == nil {
		return nil
	}
	return ptr(round2(*p))
}

func eqPtr(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return abs(*a-*b) < 1e-9
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func str(p *float64) any {
	if p == nil {
		return "null"
	}
	return *p
}
