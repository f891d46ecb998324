package results

import (
	"strings"
	"testing"
	"time"
)

func ptr(v float64) *float64 { return &v }

// closeClientExplanation is the model's explanation for close-client with
// the Linux defaults toward a remote target.
const closeClientExplanation = "client closes; each port stays in TIME_WAIT for 60 s (tcp_tw_reuse=2 applies to loopback only): 28232 ports per target / 60 s / 1 new conns per write = 470.5 writes/s"

// CapacitySentence on synthetic documents: the share of the port budget is
// achieved / predicted, the destination is the target (with its address
// when the name differs), and a client that does not run out says why.
func TestCapacitySentence(t *testing.T) {
	one := func(name, url string) []Target { return []Target{{Name: name, URL: url}} }
	cases := []struct {
		what string
		doc  Document
		want string
	}{
		{
			// The sentence: close-client on linux-default numbers,
			// 350 of 470.5 writes/s is 74 %.
			"close-client runs out", Document{
				AchievedRate: 350, Targets: one("127.0.0.1:8086", "http://127.0.0.1:8086/write?db=loadcap"),
				Capacity: Capacity{NewConnsPerWrite: 1, PredictedExhaustionRate: ptr(470.53), Explanation: closeClientExplanation},
			},
			"at 350.0 writes/s this client uses 74 % of its port budget toward 127.0.0.1:8086; it runs out at 470.5 writes/s (" + closeClientExplanation + ")",
		},
		{
			// A target whose name is not its address names both.
			"named target", Document{
				AchievedRate: 499.8, Targets: one("embedded", "http://127.0.0.1:37117/write?db=loadcap"),
				Capacity: Capacity{NewConnsPerWrite: 1, PredictedExhaustionRate: ptr(28232), Explanation: "x"},
			},
			"at 499.8 writes/s this client uses 2 % of its port budget toward embedded (127.0.0.1:37117); it runs out at 28.2k writes/s (x)",
		},
		{
			// Dual-write: the rate is per target, and so is the budget.
			"two targets", Document{
				AchievedRate: 200, Targets: []Target{{Name: "a", URL: "http://10.0.0.1:8086"}, {Name: "b", URL: "http://10.0.0.2:8086"}},
				Capacity: Capacity{NewConnsPerWrite: 1, PredictedExhaustionRate: ptr(235.27), Explanation: "shared"},
			},
			"at 200.0 writes/s this client uses 85 % of its port budget toward each target; it runs out at 235.3 writes/s (shared)",
		},
		{
			// Beyond the budget: more than 100 %.
			"over budget", Document{
				AchievedRate: 600, Targets: one("db", "http://db:8086"),
				Capacity: Capacity{NewConnsPerWrite: 1, PredictedExhaustionRate: ptr(470.53), Explanation: "e"},
			},
			"at 600.0 writes/s this client uses 128 % of its port budget toward db (db:8086); it runs out at 470.5 writes/s (e)",
		},
		{
			// A --find-limit run adds the measured limit.
			"measured", Document{
				AchievedRate: 450, Targets: one("db", "http://db:8086"),
				Capacity: Capacity{NewConnsPerWrite: 1, PredictedExhaustionRate: ptr(470.53), MeasuredExhaustionRate: ptr(461), Explanation: "e"},
			},
			"at 450.0 writes/s this client uses 96 % of its port budget toward db (db:8086); it runs out at 470.5 writes/s (e); measured: 461.0 writes/s",
		},
		{
			// No port left (the whole range reserved): no percentage of zero.
			"no budget", Document{
				AchievedRate: 10, Targets: one("db", "http://db:8086"),
				Capacity: Capacity{NewConnsPerWrite: 1, PredictedExhaustionRate: ptr(0), Explanation: "0 ports"},
			},
			"at 10 writes/s this client has no port budget toward db (db:8086): it runs out at once (0 ports)",
		},
		{
			// A keep-alive pool does not run out from the write rate.
			"does not run out", Document{
				AchievedRate: 999.8, Targets: one("embedded", "http://127.0.0.1:40521/write?db=loadcap"),
				Capacity: Capacity{NewConnsPerWrite: 0, Explanation: "keep-alive pool opens no connection per write"},
			},
			"at 999.8 writes/s (0 new connections per write) this client does not run out of ports toward embedded (127.0.0.1:40521): keep-alive pool opens no connection per write",
		},
	}
	for _, c := range cases {
		if got := CapacitySentence(&c.doc); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.what, got, c.want)
		}
	}
}

// A loopback run says so, and says what the same client and sysctls do
// toward a remote address when tcp_tw_reuse=2 made the difference.
func TestCapacitySentenceLoopback(t *testing.T) {
	d := Document{
		AchievedRate: 50, Targets: []Target{{Name: "embedded", URL: "http://127.0.0.1:9/write?db=x"}},
		Capacity: Capacity{NewConnsPerWrite: 1, PredictedExhaustionRate: ptr(28232), Explanation: "e", Loopback: true, RemoteExhaustionRate: ptr(470.53)},
	}
	want := "at 50 writes/s this client uses 0 % of its port budget toward embedded (127.0.0.1:9) over loopback; it runs out at 28.2k writes/s (e). Loopback understates exhaustion: toward a remote address the same client and sysctls run out at 470.5 writes/s (tcp_tw_reuse=2 applies to loopback only; --lab measures over veth)"
	if got := CapacitySentence(&d); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// The overload paragraph is printed once (it is among the notes), and a
// run that ran on past its window says how long it took.
func TestSummaryOverloadOnceAndOverrun(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := &Document{
		ID: "x", StartedAt: start, FinishedAt: start.Add(9500 * time.Millisecond),
		Config:       Config{Rate: 100, DurationS: 3, TimeoutS: 10},
		AchievedRate: 20,
		Targets:      []Target{{Name: "db", URL: "http://db:8086", WritesOK: 60, AchievedRate: 20, LateStarts: 40, Errors: map[string]int64{"not_started": 240}}},
	}
	msg := OverloadSentence(d)
	if msg == "" {
		t.Fatal("no overload sentence for 20 of 100 writes/s")
	}
	d.Notes = append(d.Notes, "overload: "+msg)
	var b strings.Builder
	if err := WriteSummary(&b, d, ""); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if n := strings.Count(out, "The client could not hold the asked rate"); n != 1 {
		t.Errorf("overload paragraph printed %d times:\n%s", n, out)
	}
	if !strings.Contains(out, "took: 9.5 s in all, 6.5 s past the 3s window") {
		t.Errorf("no overrun line:\n%s", out)
	}
	d.FinishedAt = start.Add(3200 * time.Millisecond)
	if s := OverrunSentence(d); s != "" {
		t.Errorf("a run that ended with its window: %q", s)
	}
}

// An interrupt cuts the window between two writes: a run that started
// every due write on time is not overloaded, whatever its writes per
// second of cut window.
func TestOverloadSentenceInterrupted(t *testing.T) {
	d := &Document{
		Interrupted: true, Config: Config{Rate: 5, DurationS: 10},
		Targets: []Target{{Name: "embedded", WritesOK: 15, AchievedRate: 4.72}},
	}
	if s := OverloadSentence(d); s != "" {
		t.Errorf("interrupted run that kept up: %q", s)
	}
	d.Targets[0].LateStarts = 3
	if s := OverloadSentence(d); s == "" {
		t.Error("interrupted run with late starts: no overload sentence")
	}
}

// The overload line names the target when its service time times the asked
// rate needs more writes in flight than the client allows, the client
// otherwise; a target that accepted no write is left out.
func TestOverloadSentenceCause(t *testing.T) {
	tgt := func(name string, ok int64, achieved, svcMean float64) Target {
		return Target{Name: name, WritesOK: ok, WritesFailed: 100 - ok, AchievedRate: achieved,
			LateStarts: 30, ServiceTimeMS: Latency{Mean: svcMean, P99: 2 * svcMean}}
	}
	cases := []struct {
		what       string
		cfg        Config
		target     Target
		want, wont string
	}{
		{"pool of 4, 100 ms each", Config{Rate: 100, PoolSize: 4}, tgt("a", 100, 40, 100),
			"every one of the 4 pooled connections was busy: the target's service time (mean 100.0 ms, p99 200.0 ms) lets 4 carry at most 40 writes/s", "machine saturated"},
		{"512 workers, 2 s each", Config{Rate: 300}, tgt("a", 100, 250, 2000),
			"every one of the 512 workers (--max-workers) was busy", "machine saturated"},
		{"fast target, client short", Config{Rate: 1000, PoolSize: 64}, tgt("a", 100, 500, 1),
			"The client could not hold the asked rate (all workers busy, or this machine saturated)", "was busy"},
	}
	for _, c := range cases {
		got := OverloadSentence(&Document{Config: c.cfg, Targets: []Target{c.target}})
		if !strings.Contains(got, c.want) || strings.Contains(got, c.wont) {
			t.Errorf("%s: %q: want %q, not %q", c.what, got, c.want, c.wont)
		}
	}
	unreached := tgt("b", 0, 10, 1)
	if got := OverloadSentence(&Document{Config: Config{Rate: 100}, Targets: []Target{unreached}}); got != "" {
		t.Errorf("unreached target: %q, want no overload line", got)
	}
}
