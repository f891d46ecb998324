package run_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loadcap/loadcap/loadgen/sink"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// Failing targets: each failure mode of a database, against the embedded
// sink, in single write and in dual write beside a healthy sink. The run
// always completes, classifies every failed write, and the healthy target
// of a dual write is unaffected.

// startSink starts an embedded sink on addr ("127.0.0.1:0": a free port)
// and closes it when the test ends.
func startSink(t *testing.T, addr string, opts sink.Options) *sink.Server {
	t.Helper()
	s, err := sink.Start(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// freePort returns a loopback address nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// failCase is one failure mode. target returns the failing target's URL
// (starting whatever it needs); check asserts on its result.
type failCase struct {
	name    string
	timeout time.Duration
	target  func(t *testing.T) string
	check   func(t *testing.T, tr results.Target, cfg run.Config)
}

// classified checks that every write of tr is accounted for: ok plus
// failed is what was issued, and the error classes add up to the failures.
func classified(t *testing.T, tr results.Target) {
	t.Helper()
	if tr.WritesOK+tr.WritesFailed != tr.Writes {
		t.Errorf("%s: ok %d + failed %d != writes %d", tr.Name, tr.WritesOK, tr.WritesFailed, tr.Writes)
	}
	var sum int64
	for _, n := range tr.Errors {
		sum += n
	}
	if sum != tr.WritesFailed {
		t.Errorf("%s: errors %v add up to %d, %d writes failed", tr.Name, tr.Errors, sum, tr.WritesFailed)
	}
	if tr.WritesFailed > 0 && tr.Errors["other"] > 0 {
		t.Errorf("%s: %d failures left unclassified (other): %s", tr.Name, tr.Errors["other"], tr.FirstError)
	}
}

// intercept answers every write with status and body (and Retry-After
// when set); pings and other paths are left to the sink.
func intercept(pick func(n int64) (status int, retryAfter, body string)) func(http.ResponseWriter, *http.Request) bool {
	var n atomic.Int64
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/write" {
			return false
		}
		io.Copy(io.Discard, r.Body)
		status, ra, body := pick(n.Add(1))
		if status == 0 {
			return false
		}
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
		return true
	}
}

func failCases() []failCase {
	const rate, dur = 200, 1500 * time.Millisecond
	return []failCase{
		{
			name: "down at start",
			target: func(t *testing.T) string {
				return "http://" + freePort(t) + "/write?db=x"
			},
			check: func(t *testing.T, tr results.Target, cfg run.Config) {
				if tr.WritesOK != 0 || tr.Errors["ECONNREFUSED"] != tr.Writes || tr.Writes == 0 {
					t.Errorf("want every write refused: %+v", tr)
				}
				if tr.Health == nil || tr.Health.FirstClass != "ECONNREFUSED" || tr.Health.RecoveredMS != nil {
					t.Errorf("health %+v: want a first failure ECONNREFUSED and no recovery", tr.Health)
				}
			},
		},
		{
			name: "dies mid-run and comes back",
			target: func(t *testing.T) string {
				addr := freePort(t)
				s := startSink(t, addr, sink.Options{})
				go func() {
					time.Sleep(500 * time.Millisecond)
					s.Close()
					time.Sleep(500 * time.Millisecond)
					// The same port again, as a restarted database.
					for i := 0; i < 50; i++ {
						s2, err := sink.Start(addr, sink.Options{})
						if err == nil {
							t.Cleanup(func() { s2.Close() })
							return
						}
						time.Sleep(20 * time.Millisecond)
					}
				}()
				return "http://" + addr + "/write?db=x"
			},
			check: func(t *testing.T, tr results.Target, cfg run.Config) {
				if tr.WritesFailed == 0 || tr.WritesOK == 0 {
					t.Errorf("want failures during the outage and successes around it: %+v", tr)
				}
				h := tr.Health
				if h == nil || h.RecoveredMS == nil {
					t.Fatalf("health %+v: want a recovery recorded", h)
				}
				if h.FirstFailureMS < 300 || *h.RecoveredMS < h.FirstFailureMS || h.UnhealthyS <= 0 {
					t.Errorf("health %+v (recovered %d ms): want a failure after the sink died and a later recovery", h, *h.RecoveredMS)
				}
				if tr.Errors["ECONNREFUSED"] == 0 {
					t.Errorf("errors %v: want ECONNREFUSED while the sink was down", tr.Errors)
				}
			},
		},
		{
			name:    "accepts but never answers",
			timeout: 500 * time.Millisecond,
			target: func(t *testing.T) string {
				s := startSink(t, "127.0.0.1:0", sink.Options{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path != "/write" {
						return false
					}
					<-r.Context().Done() // until loadcap gives up and closes
					return true
				}})
				return s.URL() + "/write?db=x"
			},
			check: func(t *testing.T, tr results.Target, cfg run.Config) {
				if tr.WritesOK != 0 || tr.Errors["timeout"] == 0 {
					t.Errorf("want write timeouts and nothing ok: %+v", tr)
				}
				// A hanging write holds its worker for the timeout: the
				// pool of 64 holds 128 writes/s, less than asked, so
				// writes start late and the late ones are counted, or
				// are failed as not started at the drain deadline.
				if tr.LateStarts == 0 {
					t.Errorf("no late starts counted with every worker held by a hanging write: %+v", tr)
				}
				if tr.Writes != int64(rate*dur.Seconds()) {
					t.Errorf("writes %d: want all %d issued and accounted for", tr.Writes, int64(rate*dur.Seconds()))
				}
				if tr.LatencyMS.P50 < 450 {
					t.Errorf("latency %+v: want the timeout (500 ms) in it", tr.LatencyMS)
				}
			},
		},
		{
			name: "answers slowly",
			target: func(t *testing.T) string {
				s := startSink(t, "127.0.0.1:0", sink.Options{Latency: 50 * time.Millisecond})
				return s.URL() + "/write?db=x"
			},
			check: func(t *testing.T, tr results.Target, cfg run.Config) {
				if tr.WritesFailed != 0 || tr.WritesOK != tr.Writes {
					t.Errorf("a slow target still accepts every write: %+v", tr)
				}
				if tr.LatencyMS.P50 < 50 || tr.ServiceTimeMS.P50 < 50 {
					t.Errorf("latency %+v, service %+v: want the 50 ms in both", tr.LatencyMS, tr.ServiceTimeMS)
				}
			},
		},
		{
			name: "5xx",
			target: func(t *testing.T) string {
				s := startSink(t, "127.0.0.1:0", sink.Options{Intercept: intercept(func(n int64) (int, string, string) {
					switch n % 4 {
					case 0:
						return 500, "", `{"error":"internal error"}`
					case 1:
						return 502, "", "bad gateway"
					}
					return 0, "", ""
				})})
				return s.URL() + "/write?db=x"
			},
			check: func(t *testing.T, tr results.Target, cfg run.Config) {
				if tr.Errors["http_5xx"] != tr.WritesFailed || tr.StatusCodes["500"] == 0 || tr.StatusCodes["502"] == 0 {
					t.Errorf("want 500 and 502 counted as http_5xx: errors %v status %v", tr.Errors, tr.StatusCodes)
				}
				if tr.WritesOK < tr.Writes/3 || tr.WritesFailed < tr.Writes/3 {
					t.Errorf("want about half ok: %+v", tr)
				}
			},
		},
		{
			name: "429 and 503 with Retry-After",
			target: func(t *testing.T) string {
				s := startSink(t, "127.0.0.1:0", sink.Options{Intercept: intercept(func(n int64) (int, string, string) {
					if n%2 == 0 {
						return 429, "1", `{"error":"too many requests"}`
					}
					return 503, "30", `{"error":"service unavailable"}`
				})})
				return s.URL() + "/write?db=x"
			},
			check: func(t *testing.T, tr results.Target, cfg run.Config) {
				if tr.WritesOK != 0 || tr.StatusCodes["429"] == 0 || tr.StatusCodes["503"] == 0 {
					t.Errorf("status %v: want 429 and 503", tr.StatusCodes)
				}
				if tr.Errors["http_4xx"] != tr.StatusCodes["429"] || tr.Errors["http_5xx"] != tr.StatusCodes["503"] {
					t.Errorf("errors %v, status %v: want 429 as http_4xx and 503 as http_5xx", tr.Errors, tr.StatusCodes)
				}
				if tr.RetryAfter["1"] != tr.StatusCodes["429"] || tr.RetryAfter["30"] != tr.StatusCodes["503"] {
					t.Errorf("retry_after %v: want every value recorded (status %v)", tr.RetryAfter, tr.StatusCodes)
				}
				// Recorded, honoured nothing: the open model keeps the
				// schedule, so every write was issued.
				if want := int64(rate * dur.Seconds()); tr.Writes != want {
					t.Errorf("writes %d, want %d: loadcap backed off", tr.Writes, want)
				}
			},
		},
		{
			name: "400 and 422 partial writes",
			target: func(t *testing.T) string {
				s := startSink(t, "127.0.0.1:0", sink.Options{Intercept: intercept(func(n int64) (int, string, string) {
					switch n % 3 {
					case 0:
						return 400, "", `{"error":"partial write: unable to parse 'x': invalid field format dropped=1"}`
					case 1:
						return 422, "", `{"code":"unprocessable entity","message":"partial write: points beyond retention policy dropped=2"}`
					}
					return 400, "", `{"error":"database not found: \"x\""}`
				})})
				return s.URL() + "/write?db=x"
			},
			check: func(t *testing.T, tr results.Target, cfg run.Config) {
				if tr.WritesOK != 0 || tr.Errors["http_4xx"] != tr.Writes {
					t.Errorf("want every write failed as http_4xx: %+v", tr)
				}
				if tr.PartialWrites == 0 || tr.PartialWrites >= tr.Writes || tr.StatusCodes["422"] == 0 {
					t.Errorf("partial_writes %d of %d, status %v: want the partial writes counted apart from the plain 400s",
						tr.PartialWrites, tr.Writes, tr.StatusCodes)
				}
			},
		},
		{
			name: "413",
			target: func(t *testing.T) string {
				s := startSink(t, "127.0.0.1:0", sink.Options{MaxBodyBytes: 512})
				return s.URL() + "/write?db=x"
			},
			check: func(t *testing.T, tr results.Target, cfg run.Config) {
				if tr.WritesOK != 0 || tr.Errors["http_4xx"] != tr.Writes || tr.StatusCodes["413"] != tr.Writes {
					t.Errorf("want every write refused 413 as http_4xx: %+v", tr)
				}
			},
		},
	}
}

func TestFailingTargets(t *testing.T) {
	const rate, dur = 200, 1500 * time.Millisecond
	for _, fc := range failCases() {
		for _, dual := range []bool{false, true} {
			name := fc.name + "/single"
			if dual {
				name = fc.name + "/dual"
			}
			t.Run(name, func(t *testing.T) {
				cfg := baseConfig(t)
				cfg.Rate, cfg.Duration, cfg.Batch = rate, dur, 10
				if fc.timeout > 0 {
					cfg.Timeout = fc.timeout
				}
				cfg.Targets = []string{fc.target(t)}
				var healthy *sink.Server
				if dual {
					healthy = startSink(t, "127.0.0.1:0", sink.Options{})
					cfg.Targets = append(cfg.Targets, healthy.URL()+"/write?db=x")
				}
				doc := executeFailing(t, cfg)
				tr := doc.Targets[0]
				classified(t, tr)
				fc.check(t, tr, cfg)
				if !dual {
					return
				}
				h := doc.Targets[1]
				classified(t, h)
				healthyBeside(t, h, cfg)
				if got, want := healthy.Stats().Lines, int64(rate*dur.Seconds())*int64(cfg.Batch); got != h.LinesOK || h.LinesOK != want {
					t.Errorf("healthy target: lines_ok %d, its sink counted %d, want %d", h.LinesOK, got, want)
				}
			})
		}
	}
}

// executeFailing runs cfg, whose first target fails (beside a healthy
// second one when there are two), bounded at 60 s, and checks what holds
// for every such run: it ends within its duration and the drain bound (the
// write timeout), with a generous allowance, is not marked interrupted,
// and has one result per target.
func executeFailing(t *testing.T, cfg run.Config) *results.Document {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	out, err := run.Execute(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > cfg.Duration+cfg.Timeout+10*time.Second {
		t.Errorf("run took %s for a %s run with a %s timeout", el, cfg.Duration, cfg.Timeout)
	}
	if out.Doc.Interrupted || len(out.Doc.Targets) != len(cfg.Targets) {
		t.Fatalf("interrupted %v, targets %+v", out.Doc.Interrupted, out.Doc.Targets)
	}
	return out.Doc
}

// healthyBeside checks the healthy target h of a run beside a failing one:
// every write asked for was made and ok, with every line, and no failure
// episode. Its late starts come from the machine (a GC or scheduling pause
// of 10 ms makes two at 200/s), not from its failing neighbour: a generous
// allowance for a busy 2-core machine.
func healthyBeside(t *testing.T, h results.Target, cfg run.Config) {
	t.Helper()
	want := int64(cfg.Rate * cfg.Duration.Seconds())
	if h.Writes != want || h.WritesOK != want || h.WritesFailed != 0 || h.LinesOK != want*int64(cfg.Batch) {
		t.Errorf("healthy target beside a failing one: writes %d ok %d failed %d lines %d (%v), want %d all ok",
			h.Writes, h.WritesOK, h.WritesFailed, h.LinesOK, h.Errors, want)
	}
	if allow := int64(5 + want/10); h.LateStarts > allow {
		t.Errorf("healthy target: %d late starts, allowance %d", h.LateStarts, allow)
	}
	if h.Health != nil {
		t.Errorf("healthy target has a failure episode: %+v", h.Health)
	}
}

// The failure summary names the target and its classes: a dual write with
// a dead second database says which one failed.
func TestFailingTargetSummary(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Duration, cfg.Rate = time.Second, 100
	dead := freePort(t)
	cfg.Targets = []string{"embedded", "http://" + dead + "/write?db=x"}
	out, err := run.Execute(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := results.WriteSummary(&b, out.Doc, out.Path); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), dead) || !strings.Contains(b.String(), "ECONNREFUSED") {
		t.Errorf("summary does not name the dead target and its class:\n%s", b.String())
	}
	if d := out.Doc.Targets[1]; d.FirstError == "" || !strings.Contains(d.FirstError, "refused") {
		t.Errorf("first_error %q: want the connection refused message", d.FirstError)
	}
}
