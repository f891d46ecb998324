package run

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"os"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/profiles"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/sampler"
)

// Outcome is what Execute returns: the document and where it was saved.
type Outcome struct {
	Doc  *results.Document
	Path string
	// Prediction is the capacity model applied to this run.
	Prediction capacity.Prediction
	// LabCPU is the CPU time the processes of a --lab run used (its load
	// generator steps and its sinks).
	LabCPU time.Duration
}

// Execute validates cfg, runs it and saves the result document. When ctx is
// cancelled (SIGINT/SIGTERM) the run stops, drains in-flight writes briefly
// and the document is still saved, marked interrupted. A returned
// InputError means nothing was sent.
func Execute(ctx context.Context, cfg Config) (*Outcome, error) {
	p, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	cfg = p.cfg
	if cfg.Out != "" {
		if err := results.CheckWritable(cfg.Out); err != nil {
			return nil, &InputError{Err: err}
		}
	}
	if err := checkExports(cfg); err != nil {
		return nil, err
	}
	if cfg.Lab {
		return executeLab(ctx, p)
	}
	if cfg.TLS.Insecure {
		fmt.Fprintln(os.Stderr, "loadcap: warning: --tls-insecure: the certificates of https targets are not verified")
	}
	targets, closeAll, err := openTargets(ctx, p)
	defer closeAll()
	if err != nil {
		return nil, err
	}

	sysctls, err := profiles.ReadSysctls("/proc/sys", profiles.RelevantKeys)
	if err != nil {
		return nil, fmt.Errorf("read sysctls: %w", err)
	}

	watches, loopback := watchList(p.targets)
	interval := cfg.SampleInterval
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	if err := waitStart(ctx, cfg.StartAt); err != nil {
		return nil, err
	}
	smp, serr := sampler.StartRun(ctx, sampler.RunConfig{Interval: interval, Watches: watches})

	maxWorkers := cfg.MaxWorkers
	if p.client.Pooled() && p.client.PoolSize > 0 && (maxWorkers == 0 || maxWorkers > p.client.PoolSize) {
		// More workers than pooled connections would only queue for a
		// connection; the queueing is measured anyway (intended start).
		maxWorkers = p.client.PoolSize
	}
	ecfg := loadgen.Config{
		Pacer:      p.pacer(cfg.shardRate()),
		Duration:   cfg.Duration,
		Workers:    cfg.Workers,
		MaxWorkers: maxWorkers,
		Drain:      cfg.Timeout,
	}
	if cfg.OnTick != nil {
		ecfg.OnInterval = func(t loadgen.Tick) {
			tw := -1
			if smp != nil {
				if v, ok := smp.Latest(); ok {
					tw = v
				}
			}
			cfg.OnTick(t, tw)
		}
	}
	exp, err := openExports(cfg, p.targets)
	if err != nil {
		if smp != nil {
			smp.Stop()
		}
		return nil, err
	}
	exp.Hook(&ecfg)
	health := newHealthTracker(len(targets))
	health.hook(&ecfg)
	started := time.Now()
	rep, err := loadgen.Run(ctx, targets, ecfg)
	if err != nil {
		exp.Close(nil)
		if smp != nil {
			smp.Stop()
		}
		return nil, err
	}
	var sres *sampler.RunResult
	if smp != nil {
		r := smp.Stop()
		sres = &r
	}

	doc := buildDocument(cfg, p, rep, started, sysctls)
	tagFleet(doc, cfg)
	notes, _ := exp.Close(rep)
	doc.Notes = append(doc.Notes, notes...)
	for i, t := range targets {
		if dc, ok := t.Driver.(interface{ DeadConnections() (int64, int64) }); ok {
			doc.Targets[i].DeadConnections, doc.Targets[i].HeartbeatFailures = dc.DeadConnections()
		}
		doc.Targets[i].Health = health.summary(i, rep.Start, rep.End)
		if ct, ok := t.Driver.(interface{ ConnTimes() *loadgen.ConnTimes }); ok {
			connect, tls := ct.ConnTimes().Histograms()
			doc.Targets[i].ConnectMS, doc.Targets[i].TLSHandshakeMS = latencyOrNil(connect), latencyOrNil(tls)
		}
		if dn, ok := t.Driver.(interface{ Notes() []string }); ok {
			for _, n := range dn.Notes() {
				doc.Notes = append(doc.Notes, t.Name+": "+n)
			}
		}
	}
	if serr != nil {
		doc.Notes = append(doc.Notes, fmt.Sprintf("socket sampler unavailable: %v", serr))
	}
	if cfg.TLS.Insecure {
		doc.Notes = append(doc.Notes, "--tls-insecure: the certificates of https targets were not verified")
	}
	if sres != nil {
		doc.Sampler = samplerDoc(sres.Series)
		for i := range doc.Targets {
			doc.Targets[i].PeakTimeWait = sres.PeakTimeWait[doc.Targets[i].Name]
		}
		ownTimeWait(doc)
	}
	pred := applyCapacity(doc, p, sysctls, loopback)
	if msg := results.OverloadSentence(doc); msg != "" {
		doc.Notes = append(doc.Notes, "overload: "+msg)
	}
	out := &Outcome{Doc: doc, Prediction: pred}
	return out, save(cfg.Out, out)
}

// save writes the document into dir. When that fails (the disk filled up
// during the run, say), the document goes to the system's temporary
// directory instead, so that what was measured is not lost; the error still
// says what happened.
func save(dir string, out *Outcome) error {
	if dir == "" {
		return nil
	}
	path, err := results.Save(dir, out.Doc)
	if err == nil {
		out.Path = path
		return nil
	}
	if alt, aerr := results.Save(os.TempDir(), out.Doc); aerr == nil {
		out.Path = alt
		return fmt.Errorf("%w; saved to %s instead", err, alt)
	}
	return err
}

// watchList resolves the targets' destinations for the sampler and reports
// whether every target is on loopback (where tcp_tw_reuse=2 applies).
func watchList(ts []loadgen.TargetSpec) ([]sampler.Watch, bool) {
	var ws []sampler.Watch
	loop := true
	for _, t := range ts {
		host, port, err := net.SplitHostPort(t.Addr)
		if err != nil {
			loop = false
			continue
		}
		var pn uint16
		fmt.Sscan(port, &pn)
		addrs, err := net.LookupIP(host)
		if err != nil || len(addrs) == 0 {
			loop = false
			continue
		}
		a, _ := netip.AddrFromSlice(addrs[0])
		a = a.Unmap()
		if !a.IsLoopback() {
			loop = false
		}
		ws = append(ws, sampler.Watch{Name: t.Name, Dst: netip.AddrPortFrom(a, pn)})
	}
	return ws, loop
}

func newID(t time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// latencyOrNil is results.LatencyOf(h), nil for a nil histogram.
func latencyOrNil(h *hdrhistogram.Histogram) *results.Latency {
	if h == nil {
		return nil
	}
	l := results.LatencyOf(h)
	return &l
}

// samplerDoc is the result document's form of the sampler's series:
// maps keyed by state and target name, times in ms.
func samplerDoc(s sampler.Series) *results.Sampler {
	out := &results.Sampler{IntervalMS: int(s.Interval.Milliseconds()), Source: s.Source, Series: make([]results.Sample, len(s.Points))}
	for i := range s.Points {
		p := &s.Points[i]
		smp := results.Sample{
			TMS:            p.T.Milliseconds(),
			States:         p.States.Map(),
			ByTarget:       make(map[string]map[string]int, len(s.Names)),
			PortsInUse:     p.PortsInUse,
			PortsAvailable: s.PortsAvailable,
			NewConnsPerS:   p.NewConnsPerS,
			SockstatTW:     p.SockstatTW,
			Counters:       p.Counters.Map(),
		}
		if tm := p.Timers.Map(); len(tm) > 0 {
			smp.Timers = tm
		}
		for j, name := range s.Names {
			smp.ByTarget[name] = p.ByTarget[j].Map()
			if p.Blocked != nil {
				if smp.BlockedByTarget == nil {
					smp.BlockedByTarget = make(map[string]int, len(s.Names))
				}
				smp.BlockedByTarget[name] = p.Blocked[j]
			}
		}
		out.Series[i] = smp
	}
	return out
}

// ownTimeWait sets each target's TIME_WAIT count at the start of the run
// (the sampler's first sample, taken before any write) and the run's own
// peak: the highest count minus the start count. What an earlier run left
// decays during this one, so a run that closes nothing has an own peak
// of 0 however many sockets it found.
func ownTimeWait(doc *results.Document) {
	if doc.Sampler == nil || len(doc.Sampler.Series) == 0 {
		return
	}
	first := doc.Sampler.Series[0].ByTarget
	for i := range doc.Targets {
		t := &doc.Targets[i]
		t.StartTimeWait = first[t.Name]["TIME_WAIT"]
		peak := t.StartTimeWait
		for _, smp := range doc.Sampler.Series {
			peak = max(peak, smp.ByTarget[t.Name]["TIME_WAIT"])
		}
		t.OwnPeakTimeWait = peak - t.StartTimeWait
	}
}

func buildDocument(cfg Config, p *plan, rep *loadgen.Report, started time.Time, sysctls map[string]string) *results.Document {
	host, _ := os.Hostname()
	doc := &results.Document{
		Schema:         results.SchemaVersion,
		ID:             newID(started),
		StartedAt:      rep.Start.UTC(),
		FinishedAt:     rep.End.UTC(),
		LoadcapVersion: cfg.Version,
		Kernel:         kernelRelease(),
		Host:           host,
		Interrupted:    rep.Interrupted,
		Sysctl:         sysctls,
		Config: results.Config{
			Rate: cfg.Rate, DurationS: cfg.Duration.Seconds(), Batch: cfg.Batch,
			ClientProfile: p.client.Name, SysctlProfile: cfg.Sysctl, Lab: cfg.Lab, FindLimit: cfg.FindLimit,
			DialMode: p.client.DialModeOrDefault(), Linger0: p.client.Linger0, Gzip: cfg.Gzip,
			Seed: p.gen.Config().Seed, Workers: cfg.Workers, MaxWorkers: cfg.MaxWorkers,
			TimeoutS: cfg.Timeout.Seconds(), Pacer: "constant", Series: p.gen.Config().Series,
			Precision: p.gen.Config().Precision, Pattern: cfg.Pattern,
			TLSInsecure: cfg.TLS.Insecure,
		},
	}
	for _, t := range p.targets {
		doc.Config.Targets = append(doc.Config.Targets, t.Redacted())
	}
	if p.client.Pooled() {
		doc.Config.PoolSize = p.client.PoolSize
	}
	var sum float64
	for i, tr := range rep.Targets {
		spec := p.targets[i]
		t := results.Target{
			Name: tr.Name, URL: spec.Redacted(), Kind: spec.Kind,
			Writes: tr.Writes, WritesOK: tr.OK, WritesFailed: tr.Failed, LinesOK: tr.Lines,
			Errors: maps.Clone(tr.Errors), LateStarts: tr.Late, AchievedRate: round2(tr.AchievedRate),
			LatencyMS: results.LatencyOf(tr.Latency), ServiceTimeMS: results.LatencyOf(tr.Service),
			NewConnections: tr.NewConnections,
			Histograms:     &results.Histograms{Latency: results.EncodeHistogram(tr.Latency), ServiceTime: results.EncodeHistogram(tr.Service)},
		}
		if len(tr.Status) > 0 {
			t.StatusCodes = map[string]int64{}
			for k, v := range tr.Status {
				t.StatusCodes[loadgen.StatusKey(k)] = v
			}
		}
		// SQLSTATE codes are counted beside their class, as pg_<code>.
		for code, n := range tr.Codes {
			t.Errors["pg_"+code] += n
		}
		if len(tr.RetryAfter) > 0 {
			t.RetryAfter = tr.RetryAfter
		}
		t.PartialWrites = tr.Partial
		if cls := results.SortedClasses(tr.Errors); len(cls) > 0 {
			t.FirstError = redactSecrets(tr.FirstErrors[cls[0]], p.targets)
		}
		sum += tr.AchievedRate
		doc.Targets = append(doc.Targets, t)
	}
	if n := len(rep.Targets); n > 0 {
		doc.AchievedRate = round2(sum / float64(n))
	}
	for _, pt := range rep.Timeline {
		doc.Timeline = append(doc.Timeline, results.Interval{
			TMS: pt.T.Milliseconds(), Target: pt.Target, Started: pt.Started, OK: pt.OK, Failed: pt.Failed,
			NewConns: pt.NewConns, Errors: pt.Errors, P99MS: float64(pt.P99.Microseconds()) / 1000,
		})
	}
	return doc
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// churnDispersion is the index of dispersion (variance / mean) of the new
// connections per timeline interval: per target, averaged over the targets,
// or of their sum when the targets share one port pool. The first interval
// (the pool warming up) and the last (partial) are left out. Zero when there
// are fewer than five intervals or no new connection in them: unknown.
func churnDispersion(doc *results.Document, shared bool) float64 {
	type key struct {
		target string
		t      int64
	}
	counts := map[key]float64{}
	var order []key
	for _, iv := range doc.Timeline {
		k := key{iv.Target, iv.TMS}
		if shared {
			k.target = ""
		}
		if _, ok := counts[k]; !ok {
			order = append(order, k)
		}
		counts[k] += float64(iv.NewConns)
	}
	series := map[string][]float64{}
	var names []string
	for _, k := range order {
		if _, ok := series[k.target]; !ok {
			names = append(names, k.target)
		}
		series[k.target] = append(series[k.target], counts[k])
	}
	var sum float64
	var n int
	for _, name := range names {
		s := series[name]
		if len(s) < 7 {
			continue
		}
		s = s[1 : len(s)-1]
		var mean, sq float64
		for _, v := range s {
			mean += v
		}
		mean /= float64(len(s))
		if mean == 0 {
			continue
		}
		for _, v := range s {
			sq += (v - mean) * (v - mean)
		}
		sum += sq / float64(len(s)-1) / mean
		n++
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// applyCapacity fills doc.Capacity from the sysctls in force and the
// measured connections per write.
func applyCapacity(doc *results.Document, p *plan, sysctls map[string]string, loopback bool) capacity.Prediction {
	k, err := capacity.KernelFromSysctl(sysctls)
	if err != nil {
		doc.Notes = append(doc.Notes, fmt.Sprintf("capacity model: %v", err))
		k = capacity.DefaultKernel()
	}
	// A target that accepted no write says nothing about the write path's
	// ports: the model is applied to the others.
	judged := results.Judged(doc)
	var conns, writes int64
	for _, t := range judged {
		conns += t.NewConnections
		writes += t.WritesOK + t.WritesFailed
	}
	cl := capacity.ClientFromProfile(p.client)
	if writes > 0 {
		cl.NewConnsPerWrite = float64(conns) / float64(writes)
	}
	// A bounded pool that never opened more than its size only warmed up:
	// it does not churn, whatever the rate.
	if p.client.Pooled() && p.client.PoolSize > 0 {
		churn := false
		for _, t := range judged {
			if t.NewConnections > int64(p.client.PoolSize) {
				churn = true
			}
		}
		if !churn {
			cl.NewConnsPerWrite = 0
		}
	}
	cl.Dispersion = churnDispersion(doc, p.client.SharesPorts())
	pred := capacity.Predict(capacity.Input{Kernel: k, Client: cl, Targets: len(doc.Targets), Loopback: loopback})
	c := &doc.Capacity
	c.PortsAvailable = pred.PortsAvailable
	c.PortRange = fmt.Sprintf("%d-%d", k.PortLow, k.PortHigh)
	c.TimeWaitHoldS = pred.HoldS
	c.NewConnsPerWrite = math.Round(cl.NewConnsPerWrite*10000) / 10000
	c.Limit = pred.Limit
	c.Explanation = pred.Explanation
	if len(judged) == 0 && len(doc.Targets) > 0 {
		c.Limit = ""
		c.Explanation = "no write reached any target: there is no write path to judge"
		return pred
	}
	if pred.Finite() {
		r := round2(pred.ExhaustionRate)
		c.PredictedExhaustionRate = &r
		if doc.AchievedRate > 0 {
			h := round2(pred.ExhaustionRate / doc.AchievedRate)
			c.Headroom = &h
		}
	}
	c.Loopback = loopback
	if loopback {
		// Loopback understates exhaustion (tcp_tw_reuse=2): say what the
		// same client and sysctls do toward a real network.
		remote := capacity.Predict(capacity.Input{Kernel: k, Client: cl, Targets: len(doc.Targets)})
		if remote.Finite() && (!pred.Finite() || round2(remote.ExhaustionRate) != round2(pred.ExhaustionRate)) {
			r := round2(remote.ExhaustionRate)
			c.RemoteExhaustionRate = &r
		}
	}
	return pred
}
