package sampler

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loadcap/loadcap/capacity"
)

// DefaultInterval is the sampling interval of a run when none is given.
const DefaultInterval = 250 * time.Millisecond

// Watch is one target of a run: the sockets toward Dst are counted under Name.
type Watch struct {
	// Name is the target name used in results (by_target, peak_time_wait).
	Name string
	// Dst is the target's ip:port; an unspecified address matches any
	// address on that port.
	Dst netip.AddrPort
}

// RunConfig configures a Run.
type RunConfig struct {
	// Interval between samples; zero means DefaultInterval.
	Interval time.Duration
	// Watches are the targets whose sockets are counted.
	Watches []Watch
	// NetNS is the network namespace (name or path) the client runs in;
	// empty means the current one.
	NetNS string
	// Source forces SourceNetlink or SourceProc; empty picks netlink when
	// it works.
	Source string
	// MaxCPU is the share of one core the sampler may use: when a sample
	// costs more CPU than MaxCPU × Interval (a socket table of tens of
	// thousands), the next one waits longer. Zero means DefaultMaxCPU;
	// negative means no limit.
	MaxCPU float64
}

// DefaultMaxCPU is the default CPU budget of a Run: 2 % of one core.
const DefaultMaxCPU = 0.02

// Run samples socket states and kernel counters periodically during a load
// run. Start it with StartRun, end it with Stop.
type Run struct {
	cfg     RunConfig
	s       *Sampler
	query   Query
	start   time.Time
	ports   int
	cancel  context.CancelFunc
	done    chan struct{}
	latest  atomic.Int64 // TIME_WAIT toward the watches, -1 before the first sample
	stopped sync.Once
	result  RunResult

	mu        sync.Mutex // guards the fields below, written by the loop and Stop
	series    []Point
	names     []string // watch names, the order of Point.ByTarget
	peak      map[string]int
	first     Counters
	prev      Counters
	prevT     time.Time
	haveFirst bool
	errors    int
	lastErr   error
	cpu       time.Duration
}

// RunResult is what a Run measured.
type RunResult struct {
	// Series is the time series the Run took.
	Series Series
	// PeakTimeWait is the largest TIME_WAIT count toward each watch, by
	// watch name.
	PeakTimeWait map[string]int
	// ActiveOpens is the increase of Tcp ActiveOpens (connections opened by
	// connect()) in the namespace over the run, all destinations together.
	ActiveOpens uint64
	// Source is SourceNetlink or SourceProc.
	Source string
	// Errors is the number of samples that failed; LastError the last
	// failure, nil when none did.
	Errors    int
	LastError error
	// CPU is the CPU time (user and system) the samples took.
	CPU time.Duration
}

// StartRun opens a Sampler in cfg.NetNS, takes a first sample at once and
// then one every cfg.Interval (stretched to stay within cfg.MaxCPU) until
// ctx ends or Stop is called.
func StartRun(ctx context.Context, cfg RunConfig) (*Run, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxCPU == 0 {
		cfg.MaxCPU = DefaultMaxCPU
	}
	s, err := Open(Options{NetNS: cfg.NetNS, Source: cfg.Source})
	if err != nil {
		return nil, fmt.Errorf("start sampler: %w", err)
	}
	sys, err := s.Sysctls()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("start sampler: %w", err)
	}
	k, err := capacity.KernelFromSysctl(sys)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("start sampler: %w", err)
	}
	r := &Run{
		cfg:   cfg,
		s:     s,
		start: time.Now(),
		ports: k.PortsInRange(),
		done:  make(chan struct{}),
		peak:  make(map[string]int, len(cfg.Watches)),
	}
	r.latest.Store(-1)
	for _, w := range cfg.Watches {
		m := Match{Name: w.Name, Dst: w.Dst}
		if k.TWReuseApplies(w.Dst.Addr().Unmap().IsLoopback()) {
			// connect() takes TIME_WAIT ports older than the delay: the
			// ports it cannot take are counted apart.
			m.ReuseDelay = k.TWReuseDelay
		}
		r.query.Matches = append(r.query.Matches, m)
		if _, seen := r.peak[w.Name]; !seen {
			r.names = append(r.names, w.Name)
		}
		r.peak[w.Name] = 0
	}
	if _, err := r.measuredSample(); err != nil {
		s.Close()
		return nil, fmt.Errorf("start sampler: %w", err)
	}
	ctx, r.cancel = context.WithCancel(ctx)
	go r.loop(ctx)
	return r, nil
}

func (r *Run) loop(ctx context.Context) {
	defer close(r.done)
	Pace(ctx, r.start, r.cfg.Interval, r.cfg.MaxCPU, func() time.Duration {
		cost, err := r.measuredSample()
		if err != nil {
			r.mu.Lock()
			r.errors++
			r.lastErr = err
			r.mu.Unlock()
		}
		return cost
	})
}

// measuredSample takes a sample on a locked thread and returns the CPU time
// it took.
func (r *Run) measuredSample() (time.Duration, error) {
	cost, err := ThreadCPU(r.sample)
	r.mu.Lock()
	r.cpu += cost
	r.mu.Unlock()
	return cost, err
}

// sample takes one snapshot and the counters and appends a Point.
func (r *Run) sample() error {
	snap, err := r.s.Snapshot(r.query)
	if err != nil {
		return err
	}
	c, err := r.s.Counters()
	if err != nil {
		return err
	}
	smp := Point{
		T:          snap.Time.Sub(r.start),
		States:     snap.Matched,
		PortsInUse: snap.PortsInUse,
		SockstatTW: int(c.TimeWait),
		Counters:   c,
		Timers:     snap.Timers,
		ByTarget:   make([]StateCounts, len(r.names)),
	}
	if snap.BlockedByMatch != nil {
		smp.Blocked = make([]int, len(r.names))
	}
	for i, name := range r.names {
		if sc := snap.ByMatch[name]; sc != nil {
			smp.ByTarget[i] = *sc
		}
		if smp.Blocked != nil {
			smp.Blocked[i] = snap.BlockedByMatch[name]
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.haveFirst {
		if dt := snap.Time.Sub(r.prevT).Seconds(); dt > 0 && c.ActiveOpens >= r.prev.ActiveOpens {
			smp.NewConnsPerS = float64(c.ActiveOpens-r.prev.ActiveOpens) / dt
		}
	} else {
		r.first, r.haveFirst = c, true
	}
	r.prev, r.prevT = c, snap.Time
	for name, sc := range snap.ByMatch {
		r.peak[name] = max(r.peak[name], sc[TimeWait])
	}
	r.series = append(r.series, smp)
	r.latest.Store(int64(snap.Matched[TimeWait]))
	return nil
}

// Latest returns the TIME_WAIT count toward all watches in the last sample;
// ok is false before the first one. It is cheap and safe to call from any
// goroutine.
func (r *Run) Latest() (timeWait int, ok bool) {
	v := r.latest.Load()
	if v < 0 {
		return 0, false
	}
	return int(v), true
}

// Stop ends the sampling, takes a last sample, closes the sampler and
// returns what the run measured. Later calls return the same result.
func (r *Run) Stop() RunResult {
	r.stopped.Do(func() {
		r.cancel()
		<-r.done
		_, err := r.measuredSample()
		r.s.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.errors++
			r.lastErr = err
		}
		r.result = RunResult{
			Series: Series{
				Interval:       r.cfg.Interval,
				Source:         r.s.Source(),
				Names:          r.names,
				PortsAvailable: r.ports,
				Points:         r.series,
			},
			PeakTimeWait: r.peak,
			Source:       r.s.Source(),
			Errors:       r.errors,
			LastError:    r.lastErr,
			CPU:          r.cpu,
		}
		if r.prev.ActiveOpens >= r.first.ActiveOpens {
			r.result.ActiveOpens = r.prev.ActiveOpens - r.first.ActiveOpens
		}
	})
	return r.result
}

// Series is the time series a Run took: one Point per sample, with
// fixed-size counts instead of maps (a few hundred bytes a sample instead of
// about 2 KB), so that a long run's memory stays flat.
type Series struct {
	Interval time.Duration
	// Source is SourceNetlink or SourceProc.
	Source string
	// Names are the watches' names, the order of Point.ByTarget.
	Names []string
	// PortsAvailable is the local port range's size in the namespace.
	PortsAvailable int
	Points         []Point
}

// Point is one sample of a Series.
type Point struct {
	// T is the time since the Run started.
	T time.Duration
	// States counts every TCP socket of the namespace by state.
	States StateCounts
	// ByTarget counts the sockets toward each watch, per Series.Names.
	ByTarget []StateCounts
	// Blocked counts, per Series.Names, the sockets toward each watch whose
	// port connect() cannot reuse when tcp_tw_reuse applies: every state
	// but TIME_WAIT, and TIME_WAIT younger than tcp_tw_reuse_delay. Nil
	// when tcp_tw_reuse applies to no watch (then every socket holds its
	// port).
	Blocked []int
	// PortsInUse is the local ports in use toward the watches.
	PortsInUse int
	// SockstatTW is the tw count of /proc/net/sockstat.
	SockstatTW int
	// NewConnsPerS is the connections opened by connect() per second since
	// the previous sample, all destinations together.
	NewConnsPerS float64
	// Counters are the kernel counters at the sample.
	Counters Counters
	// Timers counts the established sockets toward the watches by pending
	// kernel timer.
	Timers TimerCounts
}
