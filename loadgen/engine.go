package loadgen

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Config controls pacing and the worker pools.
type Config struct {
	// Pacer schedules writes (vegeta.Rate, vegeta.LinearPacer, ...). Every
	// target gets the same schedule: every write goes to every target.
	Pacer vegeta.Pacer
	// Duration is how long the pacer issues writes.
	Duration time.Duration
	// Workers is the initial number of workers per target (default 8).
	Workers int
	// MaxWorkers bounds the workers per target (default 512). When all are
	// busy writes queue, and their latency still runs from their intended
	// start time.
	MaxWorkers int
	// Drain bounds how long in-flight writes may finish after the window
	// ends or the run is interrupted (default 10 s); writes still running
	// then are cancelled.
	Drain time.Duration
	// Grace is how long after the end of the window a write that fell due
	// in it may still start, late (default 1 s: scheduling jitter on a busy
	// machine is not a failure). Writes no worker could start by then
	// (every worker busy) are failed as not_started, so an over-asked run
	// lasts its window, the grace and its in-flight writes, not until its
	// backlog drains. After an interrupt there is no grace: no write
	// starts that was not due before the signal, and those due before it
	// but not started within the late threshold are not_started.
	Grace time.Duration
	// Interval is the timeline and progress interval (default 1 s).
	Interval time.Duration
	// LateThreshold: a write that starts later than this after its intended
	// time counts as a late start (default 10 ms).
	LateThreshold time.Duration
	// OnInterval, if set, is called after each interval with live figures.
	OnInterval func(Tick)
	// OnResult, if set, is called by the workers after every write (from
	// many goroutines at once: it must be safe for concurrent use and
	// cheap). Exports such as vegeta's result encoding hang off it.
	OnResult func(WriteRecord)
}

type targetRun struct {
	t       Target
	index   int
	stopped bool // under mu: set when pacing has ended
	mu      sync.Mutex
	recs    []*recorder
	writes  atomic.Int64
	ivlHist *hdrhistogram.Histogram
	last    IntervalCounts // cumulative at the previous tick
}

func (tr *targetRun) recorders() []*recorder {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]*recorder(nil), tr.recs...)
}

// Run drives the workload against every target until cfg.Duration has
// elapsed or ctx is cancelled (an interrupt: the report is still complete
// and marked Interrupted).
func Run(ctx context.Context, targets []Target, cfg Config) (*Report, error) {
	if cfg.Pacer == nil {
		return nil, fmt.Errorf("run: no pacer")
	}
	if cfg.Duration <= 0 {
		return nil, fmt.Errorf("run: bad duration %s", cfg.Duration)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.MaxWorkers <= 0 {
		cfg.MaxWorkers = 512
	}
	if cfg.Workers > cfg.MaxWorkers {
		cfg.Workers = cfg.MaxWorkers
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 10 * time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.LateThreshold <= 0 {
		cfg.LateThreshold = 10 * time.Millisecond
	}
	runs := make([]*targetRun, len(targets))
	for i, t := range targets {
		runs[i] = &targetRun{t: t, index: i, ivlHist: NewHistogram()}
	}
	// Writes keep their own context so that an interrupt lets in-flight
	// writes finish (bounded by Drain) instead of losing them.
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()

	start := time.Now()
	var paceEnd atomic.Int64
	paceEnd.Store(start.Add(cfg.Duration).UnixNano())

	var workers sync.WaitGroup
	pacings := make([]*pacing, len(runs))
	for i, tr := range runs {
		pc := &pacing{tr: tr, cfg: cfg, start: start, ctx: ctx, wctx: wctx, paceEnd: &paceEnd, wg: &workers}
		for i := 0; i < cfg.Workers; i++ {
			pc.spawn()
		}
		go pc.watch()
		pacings[i] = pc
	}

	// Reporter: timeline and live progress.
	var timeline []TimelinePoint
	repDone := make(chan struct{})
	repStop := make(chan struct{})
	go func() {
		defer close(repDone)
		tk := time.NewTicker(cfg.Interval)
		defer tk.Stop()
		lastT := time.Duration(0)
		for {
			select {
			case <-repStop:
				// The last, partial interval: always emitted, so that every
				// write reaches the timeline and interval consumers.
				el := time.Since(start)
				timeline = append(timeline, tick(runs, el, el-lastT, cfg.OnInterval)...)
				return
			case now := <-tk.C:
				el := now.Sub(start)
				timeline = append(timeline, tick(runs, el, el-lastT, cfg.OnInterval)...)
				lastT = el
			}
		}
	}()

	// Pacing ends at the end of the duration or at an interrupt. From then
	// on no write starts: a worker still waiting for a write's time stops,
	// and a write that fell due but found no free worker is not_started.
	endTimer := time.NewTimer(time.Until(time.Unix(0, paceEnd.Load())))
	select {
	case <-ctx.Done():
		lowerTo(&paceEnd, time.Now().UnixNano())
	case <-endTimer.C:
	}
	endTimer.Stop()
	interrupted := ctx.Err() != nil
	// Writes that fell due in the window but that no worker has claimed
	// yet (every worker busy) may still start within the grace: the
	// watchdog keeps adding workers for them until then.
	if !interrupted {
		graceEnd := time.Unix(0, paceEnd.Load()).Add(cfg.Grace)
		for time.Now().Before(graceEnd) && ctx.Err() == nil && unclaimed(pacings) {
			time.Sleep(watchEvery)
		}
	}
	for _, tr := range runs {
		tr.mu.Lock()
		tr.stopped = true // no worker is added once Run waits for them
		tr.mu.Unlock()
	}
	drain := cfg.Drain
	if interrupted && drain > 2*time.Second {
		drain = 2 * time.Second
	}
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drain):
		wcancel() // stop waiting for pool slots; I/O is bounded by the write timeout
		<-done
	}
	close(repStop)
	<-repDone

	rep := &Report{Start: start, End: time.Now(), Interrupted: interrupted, Timeline: timeline}
	rep.PaceTime = time.Unix(0, paceEnd.Load()).Sub(start)
	if rep.PaceTime > cfg.Duration {
		rep.PaceTime = cfg.Duration
	}
	// The achieved rate is per second of writing: a pattern's idle phases
	// ask for no writes, so they do not dilute it.
	active := rep.PaceTime
	if pp, ok := cfg.Pacer.(PatternPacer); ok {
		active = pp.WriteTime(rep.PaceTime)
	}
	for _, tr := range runs {
		rep.Targets = append(rep.Targets, tr.merge(active))
	}
	return rep, nil
}

// intendedAt returns when write n is due, relative to the start, by asking
// the pacer (so any vegeta pacer works), and whether the pacer stopped.
func intendedAt(p vegeta.Pacer, n uint64) (time.Duration, bool) {
	var e time.Duration
	for i := 0; i < 64; i++ {
		w, stop := p.Pace(e, n)
		if stop {
			return e, true
		}
		if w <= 0 {
			return e, false
		}
		e += w
	}
	return e, false
}

// pacing is one target's schedule, shared by its workers: each worker
// claims the next write number, computes its intended start from the pacer
// and sleeps until then. There is no dispatcher goroutine and no channel
// between pacing and writing; the only state shared by the workers is the
// claim counter (one atomic add per write).
type pacing struct {
	tr        *targetRun
	cfg       Config
	start     time.Time
	ctx, wctx context.Context
	paceEnd   *atomic.Int64 // unix ns; the end of the window, or the interrupt
	wg        *sync.WaitGroup
	next      atomic.Uint64
	nworkers  atomic.Int32
}

// end returns the end of the window in unix ns: the end of the duration,
// or, once the run is interrupted, the moment a worker or Run saw it. A
// worker asks before every write, so none starts a write that was not due
// before the signal, even if it wakes before Run has seen the signal.
func (p *pacing) end() int64 {
	if p.ctx.Err() != nil {
		lowerTo(p.paceEnd, time.Now().UnixNano())
	}
	return p.paceEnd.Load()
}

// lowerTo sets v to x unless it already holds an earlier time.
func lowerTo(v *atomic.Int64, x int64) {
	for {
		cur := v.Load()
		if cur <= x || v.CompareAndSwap(cur, x) {
			return
		}
	}
}

// spawnLag: a worker that claims a write already this late adds a worker.
const spawnLag = time.Millisecond

// watchEvery is how often the watchdog looks for an overdue write.
const watchEvery = 2 * time.Millisecond

// watch adds a worker whenever the next unclaimed write is overdue: when
// every worker is stuck in a write (a target that never answers), nobody
// would otherwise claim the writes falling due, and the open model would
// quietly become a closed one. It ends with the pacing.
func (p *pacing) watch() {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case now := <-t.C:
			if now.UnixNano() > p.paceEnd.Load()+int64(p.cfg.Grace) {
				return
			}
			due, ok := p.dueInWindow(p.next.Load())
			if !ok {
				return
			}
			if now.Sub(p.start.Add(due)) > spawnLag {
				p.spawn()
			}
		}
	}
}

// dueInWindow returns when write n is due and whether it is part of the
// run: the pacer has not stopped before it and it falls due in the window.
func (p *pacing) dueInWindow(n uint64) (time.Duration, bool) {
	due, stop := intendedAt(p.cfg.Pacer, n)
	return due, !stop && due <= p.cfg.Duration
}

// unclaimed reports whether a write due in the window is not yet claimed
// by a worker on some target.
func unclaimed(ps []*pacing) bool {
	for _, p := range ps {
		if _, ok := p.dueInWindow(p.next.Load()); ok {
			return true
		}
	}
	return false
}

// spawn starts one more worker unless MaxWorkers are running.
func (p *pacing) spawn() bool {
	for {
		n := p.nworkers.Load()
		if int(n) >= p.cfg.MaxWorkers {
			return false
		}
		if p.nworkers.CompareAndSwap(n, n+1) {
			break
		}
	}
	rec := newRecorder()
	p.tr.mu.Lock()
	if p.tr.stopped {
		// Run is already waiting for the workers: no new ones.
		p.tr.mu.Unlock()
		p.nworkers.Add(-1)
		return false
	}
	p.tr.recs = append(p.tr.recs, rec)
	p.wg.Add(1)
	p.tr.mu.Unlock()
	go p.work(rec)
	return true
}

func (p *pacing) work(rec *recorder) {
	defer p.wg.Done()
	s := p.tr.t.Driver.NewSession()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	cfg := p.cfg
	for {
		n := p.next.Add(1) - 1
		due, ok := p.dueInWindow(n)
		if !ok {
			return
		}
		at := p.start.Add(due)
		end := p.end()
		if at.UnixNano() > end {
			return // interrupted before this write was due
		}
		// A write claimed after the end (and its grace) fell due in the
		// window but found every worker busy until then: it is not
		// started. (A worker that claimed it in time and slept until it
		// was due starts it: the last write is due at the very end.)
		grace := cfg.Grace
		if p.ctx.Err() != nil {
			grace = cfg.LateThreshold
		}
		if claimed := time.Now(); claimed.UnixNano() > end+int64(grace) {
			p.tr.writes.Add(1)
			res := Result{Class: ClassNotStarted, Err: fmt.Errorf("write %d due at %s not started: every worker was busy until the run ended", n, due.Round(time.Millisecond))}
			p.done(rec, &res, n, at, claimed, claimed)
			continue
		}
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-p.ctx.Done():
				timer.Stop()
				if at.UnixNano() > p.end() {
					return // stopped before this write was due
				}
			case <-timer.C:
			}
		} else if -d > spawnLag {
			p.spawn()
		}
		p.tr.writes.Add(1)
		startT := time.Now()
		rec.started.Add(1)
		// The last write is due at the very end of the window (the pacer's
		// first one one interval after the start), so it starts a hair
		// after it: a start within the late threshold of the end is on time.
		if startT.UnixNano() <= p.paceEnd.Load()+int64(cfg.LateThreshold) {
			rec.inWindow.Add(1)
		}
		if startT.Sub(at) > cfg.LateThreshold {
			rec.late.Add(1)
		}
		res := safeWrite(p.wctx, s, ticket{seq: n, at: at})
		p.done(rec, &res, n, at, startT, time.Now())
	}
}

// done records a write's result and hands it to the OnResult hook.
func (p *pacing) done(rec *recorder, res *Result, n uint64, at, start, end time.Time) {
	rec.record(res, at, start, end)
	if p.cfg.OnResult != nil {
		p.cfg.OnResult(WriteRecord{Target: p.tr.index, Seq: n, Intended: at, Start: start, End: end, Result: res})
	}
}

// NewPacer returns a constant pacer for rate writes per second. Fractional
// rates are kept exact by widening the period.
func NewPacer(rate float64) vegeta.Pacer {
	if rate == math.Trunc(rate) && rate <= math.MaxInt32 {
		return vegeta.Rate{Freq: int(rate), Per: time.Second}
	}
	return vegeta.Rate{Freq: int(math.Round(rate * 1000)), Per: 1000 * time.Second}
}
