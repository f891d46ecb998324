package sampler

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/loadcap/loadcap/capacity"
)

// WatchConfig says what a Watcher watches: the sockets toward a destination
// port (the client's view, with an optional address) or on a local port (a
// server's view).
type WatchConfig struct {
	// Port is the destination port; Addr optionally narrows it to one
	// destination address.
	Port uint16
	Addr netip.Addr
	// LocalPort selects sockets by local port instead of (or on top of)
	// the destination.
	LocalPort uint16
	// NetNS and Source are as in Options.
	NetNS  string
	Source string
}

// Watcher takes successive reports for `loadcap sample`.
type Watcher struct {
	s      *Sampler
	cfg    WatchConfig
	query  Query
	prev   Counters
	prevT  time.Time
	kernel capacity.Kernel
}

// NewWatcher opens a sampler for cfg and reads the baseline counters that
// the first report's connection rate is measured from.
func NewWatcher(cfg WatchConfig) (*Watcher, error) {
	if cfg.Port == 0 && cfg.LocalPort == 0 {
		return nil, fmt.Errorf("watch: a destination port or a local port is needed")
	}
	s, err := Open(Options{NetNS: cfg.NetNS, Source: cfg.Source})
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	w := &Watcher{s: s, cfg: cfg}
	w.query.Matches = []Match{{
		Name:      "watch",
		Dst:       netip.AddrPortFrom(cfg.Addr, cfg.Port),
		LocalPort: cfg.LocalPort,
	}}
	if w.prev, err = s.Counters(); err != nil {
		s.Close()
		return nil, fmt.Errorf("watch: %w", err)
	}
	w.prevT = time.Now()
	return w, nil
}

// Close releases the sampler.
func (w *Watcher) Close() error { return w.s.Close() }

// Report is one interval of `loadcap sample`. The JSON keys are part of the
// command's contract.
type Report struct {
	// T is when the snapshot was taken.
	T time.Time `json:"t"`
	// Source is SourceNetlink or SourceProc.
	Source string `json:"source"`
	// States counts the watched sockets per state.
	States map[string]int `json:"states"`
	// ByDestination counts them per destination ip:port (per local ip:port
	// for a local-port watch).
	ByDestination map[string]map[string]int `json:"by_destination"`
	// PortsInUse is the fullest destination's pool: local ports held
	// toward the destination with the most (plain connect() draws from one
	// pool per destination).
	PortsInUse int `json:"ports_in_use"`
	// PortsInUseAll is the number of distinct local ports held toward all
	// watched destinations together (the pool bind-before-connect shares).
	PortsInUseAll int `json:"ports_in_use_all"`
	// PortsAvailable is the pool size: ip_local_port_range minus reserved
	// ports.
	PortsAvailable int `json:"ports_available"`
	// NewConnsPerS is the rate of Tcp ActiveOpens since the previous report
	// (all destinations of the namespace).
	NewConnsPerS float64 `json:"new_conns_per_s"`
	// TimeWait is the TIME_WAIT count and ages.
	TimeWait TimeWaitReport `json:"time_wait"`
	// ProjectedExhaustionRate is the new-connection rate per destination at
	// which the pool runs out; null when it never does.
	ProjectedExhaustionRate *float64 `json:"projected_exhaustion_rate"`
	// HoldS is the time a closed port stays unusable (TIME_WAIT or the
	// tcp_tw_reuse delay).
	HoldS float64 `json:"hold_s"`
	// Headroom is ProjectedExhaustionRate / NewConnsPerS; null when
	// unlimited.
	Headroom *float64 `json:"headroom"`
	// Projection says it in plain language.
	Projection string `json:"projection"`
}

// TimeWaitReport is the TIME_WAIT part of a Report.
type TimeWaitReport struct {
	// Count is the number of watched sockets in TIME_WAIT.
	Count int `json:"count"`
	// Sockstat is the namespace-wide TIME_WAIT count of /proc/net/sockstat.
	Sockstat int64 `json:"sockstat_tw"`
	// Age is the distribution of their age (60 s minus the time left), in
	// 5 s buckets from young to old.
	Age []AgeBucket `json:"age"`
}

// AgeBucket counts TIME_WAIT sockets aged [FromS, ToS) seconds.
type AgeBucket struct {
	FromS int `json:"from_s"`
	ToS   int `json:"to_s"`
	N     int `json:"n"`
}

// AgeBuckets turns a histogram of remaining lifetime into ages, young to
// old. A socket with 60 s or more left counts as age 0-5 s.
func AgeBuckets(h TWHistogram) []AgeBucket {
	w := int(TWBucketWidth / time.Second)
	out := make([]AgeBucket, TWBuckets-1)
	for j := range out {
		out[j] = AgeBucket{FromS: j * w, ToS: (j + 1) * w, N: h[TWBuckets-2-j]}
	}
	out[0].N += h[TWBuckets-1]
	return out
}

// Next takes a snapshot and the counters now and reports them, with the
// connection rate since the previous call (or since NewWatcher).
func (w *Watcher) Next() (*Report, error) {
	snap, c, k, err := w.s.Read(w.query)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	var rate float64
	if dt := snap.Time.Sub(w.prevT).Seconds(); dt > 0 && c.ActiveOpens >= w.prev.ActiveOpens {
		rate = float64(c.ActiveOpens-w.prev.ActiveOpens) / dt
	}
	w.prev, w.prevT = c, snap.Time
	return buildReport(snap, c, k, rate, w.cfg.Addr), nil
}

// Read takes a snapshot for q and reads the counters and the kernel
// settings (from the namespace's sysctls) that go with it: what one report
// of `loadcap sample` or one exporter sample needs.
func (s *Sampler) Read(q Query) (*Snapshot, Counters, capacity.Kernel, error) {
	snap, err := s.Snapshot(q)
	if err != nil {
		return nil, Counters{}, capacity.Kernel{}, err
	}
	c, err := s.Counters()
	if err != nil {
		return nil, Counters{}, capacity.Kernel{}, err
	}
	sys, err := s.Sysctls()
	if err != nil {
		return nil, Counters{}, capacity.Kernel{}, err
	}
	k, err := capacity.KernelFromSysctl(sys)
	if err != nil {
		return nil, Counters{}, capacity.Kernel{}, fmt.Errorf("read sysctls: %w", err)
	}
	return snap, c, k, nil
}

// buildReport is the pure part of Next.
func buildReport(snap *Snapshot, c Counters, k capacity.Kernel, rate float64, addr netip.Addr) *Report {
	r := &Report{
		T:              snap.Time,
		Source:         snap.Source,
		States:         snap.Matched.Map(),
		ByDestination:  make(map[string]map[string]int, len(snap.ByDestination)),
		PortsInUseAll:  snap.PortsInUse,
		PortsAvailable: k.PortsInRange(),
		NewConnsPerS:   rate,
		TimeWait: TimeWaitReport{
			Count:    snap.Matched[TimeWait],
			Sockstat: c.TimeWait,
			Age:      AgeBuckets(snap.TimeWait),
		},
	}
	for d, sc := range snap.ByDestination {
		r.ByDestination[d.String()] = sc.Map()
	}
	// tcp_tw_reuse=2 applies when the destination is loopback: the given
	// address, or else every destination seen.
	loopback := addr.IsValid() && addr.Unmap().IsLoopback()
	if !addr.IsValid() || addr.IsUnspecified() {
		loopback = len(snap.PortsInUseByDestination) > 0
		for d := range snap.PortsInUseByDestination {
			loopback = loopback && d.Addr().IsLoopback()
		}
	}
	for _, n := range snap.PortsInUseByDestination {
		r.PortsInUse = max(r.PortsInUse, n)
	}
	p := Project(k, loopback, r.PortsInUse, rate)
	r.HoldS = p.HoldS
	r.Projection = p.Text
	if !math.IsInf(p.ExhaustionRate, 0) {
		v := p.ExhaustionRate
		r.ProjectedExhaustionRate = &v
	}
	if !math.IsInf(p.Headroom, 0) && !math.IsNaN(p.Headroom) {
		v := p.Headroom
		r.Headroom = &v
	}
	return r
}

// Text formats the report for a terminal, a few lines per interval.
func (r *Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s\n", r.T.Format("15:04:05.000"), formatStates(r.States))
	fmt.Fprintf(&b, "  new connections/s %.1f   ports in use %d of %d", r.NewConnsPerS, r.PortsInUse, r.PortsAvailable)
	if r.PortsInUseAll != r.PortsInUse {
		fmt.Fprintf(&b, " (%d across destinations)", r.PortsInUseAll)
	}
	b.WriteByte('\n')
	fmt.Fprintf(&b, "  TIME_WAIT %d (namespace %d)", r.TimeWait.Count, r.TimeWait.Sockstat)
	if r.TimeWait.Count > 0 {
		b.WriteString("  age")
		for _, a := range r.TimeWait.Age {
			if a.N > 0 {
				fmt.Fprintf(&b, " %d-%ds:%d", a.FromS, a.ToS, a.N)
			}
		}
	}
	b.WriteByte('\n')
	if len(r.ByDestination) > 1 {
		keys := make([]string, 0, len(r.ByDestination))
		for k := range r.ByDestination {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s  %s\n", k, formatStates(r.ByDestination[k]))
		}
	}
	fmt.Fprintf(&b, "  %s\n", r.Projection)
	return b.String()
}

func formatStates(m map[string]int) string {
	if len(m) == 0 {
		return "no sockets"
	}
	var parts []string
	for st := Established; st < numStates; st++ {
		if n := m[st.String()]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", st, n))
		}
	}
	return strings.Join(parts, "  ")
}
