package exporter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/sampler"
)

// DefaultTop is how many destinations get their own series by default.
const DefaultTop = 20

// Config configures an Exporter.
type Config struct {
	// Port and Addr select the destinations (client view); LocalPort
	// selects a local port instead (server view). All zero: every socket,
	// by destination.
	Port      uint16
	Addr      netip.Addr
	LocalPort uint16
	// Top is how many destinations, by ports in use, get their own series;
	// the rest are summed under destination="other". Zero means
	// DefaultTop; negative means none (everything under other).
	Top int
	// Interval between samples; zero means one second.
	Interval time.Duration
	// MaxCPU is the share of one core the exporter process may use,
	// sampling, scrapes and runtime together (see Run); zero means
	// sampler.DefaultMaxCPU (2 %), negative no limit.
	MaxCPU float64
	// NetNS and Source are as in sampler.Options.
	NetNS  string
	Source string
}

// Exporter samples one network namespace on its own cadence and serves the
// latest sample to Prometheus: a scrape never dumps sockets.
type Exporter struct {
	cfg   Config
	s     *sampler.Sampler
	query sampler.Query
	view  string
	reg   *prometheus.Registry

	latest  atomic.Pointer[State]
	samples atomic.Uint64
	failed  atomic.Uint64
	cpu     atomic.Int64 // nanoseconds

	mu      sync.Mutex // guards lastErr
	lastErr error
}

// New opens the sampler and takes the first sample, so that the first
// scrape already has data.
func New(cfg Config) (*Exporter, error) {
	if cfg.Top == 0 {
		cfg.Top = DefaultTop
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.MaxCPU == 0 {
		cfg.MaxCPU = sampler.DefaultMaxCPU
	}
	s, err := sampler.Open(sampler.Options{NetNS: cfg.NetNS, Source: cfg.Source})
	if err != nil {
		return nil, fmt.Errorf("start exporter: %w", err)
	}
	e := &Exporter{cfg: cfg, s: s, view: ViewClient}
	if cfg.Port != 0 || cfg.LocalPort != 0 || cfg.Addr.IsValid() {
		e.query.Matches = []sampler.Match{{Name: "watch", Dst: netip.AddrPortFrom(cfg.Addr, cfg.Port), LocalPort: cfg.LocalPort}}
	}
	if cfg.LocalPort != 0 && cfg.Port == 0 && !cfg.Addr.IsValid() {
		e.view = ViewServer
	}
	if _, err := e.sample(); err != nil {
		s.Close()
		return nil, fmt.Errorf("start exporter: %w", err)
	}
	e.reg = prometheus.NewRegistry()
	e.reg.MustRegister(e, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	return e, nil
}

// Close releases the sampler.
func (e *Exporter) Close() error { return e.s.Close() }

// Latest returns the sample a scrape serves now.
func (e *Exporter) Latest() *State { return e.latest.Load() }

// LastError returns the error of the last failed sample, nil when none
// failed.
func (e *Exporter) LastError() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastErr
}

// sample takes one snapshot, the counters and the sysctls, and publishes
// the State built from them; it returns the CPU time it took.
func (e *Exporter) sample() (time.Duration, error) {
	cost, err := sampler.ThreadCPU(func() error {
		snap, c, k, err := e.s.Read(e.query)
		if err != nil {
			return fmt.Errorf("sample: %w", err)
		}
		e.latest.Store(build(snap, c, k, e.view, e.cfg.Top))
		return nil
	})
	e.cpu.Add(int64(cost))
	e.samples.Add(1)
	if err != nil {
		e.failed.Add(1)
		e.mu.Lock()
		e.lastErr = err
		e.mu.Unlock()
	}
	return cost, err
}

// Run samples every Interval until ctx ends. A failed sample is counted and
// the previous one stays served. The CPU budget (MaxCPU) covers the whole
// process, not only the samples: each sample is charged with all the CPU
// the process used since the previous one (scrapes, garbage collection,
// the HTTP server), and the interval stretches when that is more than
// MaxCPU × Interval.
func (e *Exporter) Run(ctx context.Context) {
	last := processCPU()
	sampler.Pace(ctx, time.Now(), e.cfg.Interval, e.cfg.MaxCPU, func() time.Duration {
		e.sample()
		now := processCPU()
		cost := now - last
		last = now
		return cost
	})
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) { describe(ch) }

// Collect implements prometheus.Collector: the latest sample and the
// exporter's own counters.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	if st := e.latest.Load(); st != nil {
		collectState(ch, st)
	}
	ch <- prometheus.MustNewConstMetric(descSamples, prometheus.CounterValue, float64(e.samples.Load()))
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(e.failed.Load()))
	ch <- prometheus.MustNewConstMetric(descSampleCPU, prometheus.CounterValue, time.Duration(e.cpu.Load()).Seconds())
	ch <- prometheus.MustNewConstMetric(descIntervalSet, prometheus.GaugeValue, e.cfg.Interval.Seconds())
}

// Handler serves /metrics in the Prometheus exposition format.
func (e *Exporter) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "loadcap exporter: metrics at /metrics")
	})
	return mux
}

// Serve runs the sampling loop and serves Handler on ln until ctx ends,
// then shuts the server down (waiting up to 5 s for scrapes in flight).
func (e *Exporter) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx)
	}()
	srv := &http.Server{Handler: e.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = srv.Shutdown(sctx)
		scancel()
		<-errc
	case err = <-errc:
	}
	cancel()
	<-done
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics: %w", err)
	}
	return nil
}
