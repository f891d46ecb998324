package loadgen

import (
	"strconv"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// WriteRecord is one write's outcome, for per-write exports.
type WriteRecord struct {
	Target   int // index into the targets of Run
	Seq      uint64
	Intended time.Time
	Start    time.Time
	End      time.Time
	Result   *Result
}

// Tick is a live snapshot for progress display.
type Tick struct {
	Elapsed time.Duration
	Targets []TickTarget
}

// TickTarget is one target's figures over the last interval.
type TickTarget struct {
	Name     string
	Rate     float64 // writes started per second
	OK       int64   // cumulative
	Failed   int64   // cumulative
	P99      time.Duration
	Interval IntervalCounts
	// Hist is the latency histogram of the interval (µs, from the intended
	// start); valid only during the callback.
	Hist *hdrhistogram.Histogram
}

// IntervalCounts are the counts of one target over one interval.
type IntervalCounts struct {
	Started, OK, Failed int64
	// NewConns is the connections the target's driver opened.
	NewConns int64
	Errors   map[string]int64
}

// Report is what the engine measured.
type Report struct {
	Start       time.Time
	End         time.Time
	PaceTime    time.Duration // how long the pacer ran
	Interrupted bool
	Targets     []TargetReport
	Timeline    []TimelinePoint
}

// TimelinePoint is one interval of one target.
type TimelinePoint struct {
	T      time.Duration
	Target string
	IntervalCounts
	P99 time.Duration
}

// TargetReport is the merged result of one target's workers.
type TargetReport struct {
	Name string
	// Writes is the number of writes issued by the pacer; Started those a
	// worker began (the rest failed as not_started).
	Writes, Started, OK, Failed, Lines, Late int64
	// StartedInWindow counts writes started while the pacer ran.
	StartedInWindow int64
	Errors          map[string]int64
	Status          map[int]int64
	Codes           map[string]int64
	RetryAfter      map[string]int64
	Partial         int64
	FirstErrors     map[string]string
	// Latency is measured from the intended start; Service from the actual
	// start. Values are microseconds.
	Latency, Service *hdrhistogram.Histogram
	NewConnections   int64
	Workers          int
	// AchievedRate is the writes started in the pacing window per second of
	// it; for a PatternPacer, per second of its write phases.
	AchievedRate float64
}

func tick(runs []*targetRun, el, span time.Duration, cb func(Tick)) []TimelinePoint {
	out := make([]TimelinePoint, 0, len(runs))
	tk := Tick{Elapsed: el}
	for _, tr := range runs {
		var cur IntervalCounts
		cur.Errors = map[string]int64{}
		tr.ivlHist.Reset()
		for _, r := range tr.recorders() {
			cur.Started += r.started.Load()
			cur.OK += r.ok.Load()
			cur.Failed += r.failed.Load()
			r.addClasses(cur.Errors)
			r.mu.Lock()
			tr.ivlHist.Merge(r.ivl)
			r.ivl.Reset()
			r.mu.Unlock()
		}
		cur.NewConns = tr.t.Driver.NewConnections()
		d := IntervalCounts{Started: cur.Started - tr.last.Started, OK: cur.OK - tr.last.OK, Failed: cur.Failed - tr.last.Failed,
			NewConns: cur.NewConns - tr.last.NewConns, Errors: map[string]int64{}}
		for c, v := range cur.Errors {
			if dv := v - tr.last.Errors[c]; dv > 0 {
				d.Errors[c] = dv
			}
		}
		tr.last = cur
		p99 := time.Duration(tr.ivlHist.ValueAtQuantile(99)) * time.Microsecond
		out = append(out, TimelinePoint{T: el, Target: tr.t.Name, IntervalCounts: d, P99: p99})
		rate := 0.0
		if span > 0 {
			rate = float64(d.Started) / span.Seconds()
		}
		tk.Targets = append(tk.Targets, TickTarget{Name: tr.t.Name, Rate: rate, OK: cur.OK, Failed: cur.Failed, P99: p99, Interval: d, Hist: tr.ivlHist})
	}
	if cb != nil {
		cb(tk)
	}
	return out
}

func (tr *targetRun) merge(pace time.Duration) TargetReport {
	rep := TargetReport{Name: tr.t.Name, Latency: NewHistogram(), Service: NewHistogram(), Errors: map[string]int64{},
		Status: map[int]int64{}, Codes: map[string]int64{}, RetryAfter: map[string]int64{}, FirstErrors: map[string]string{}}
	rep.Writes = tr.writes.Load()
	for _, r := range tr.recorders() {
		rep.Workers++
		rep.Started += r.started.Load()
		rep.StartedInWindow += r.inWindow.Load()
		rep.OK += r.ok.Load()
		rep.Failed += r.failed.Load()
		rep.Lines += r.lines.Load()
		rep.Late += r.late.Load()
		r.addClasses(rep.Errors)
		r.mu.Lock()
		rep.Latency.Merge(r.lat)
		rep.Service.Merge(r.svc)
		for k, v := range r.status {
			rep.Status[k] += v
		}
		for k, v := range r.codes {
			rep.Codes[k] += v
		}
		for k, v := range r.retryAfter {
			rep.RetryAfter[k] += v
		}
		for k, v := range r.firstErr {
			if _, ok := rep.FirstErrors[k]; !ok {
				rep.FirstErrors[k] = v
			}
		}
		rep.Partial += r.partial
		r.mu.Unlock()
	}
	rep.NewConnections = tr.t.Driver.NewConnections()
	if pace > 0 {
		rep.AchievedRate = float64(rep.StartedInWindow) / pace.Seconds()
	}
	return rep
}

// StatusKey formats an HTTP status for result maps.
func StatusKey(code int) string { return strconv.Itoa(code) }
