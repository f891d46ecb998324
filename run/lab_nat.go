package run

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/fleet"
	"github.com/loadcap/loadcap/lab"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/sampler"
)

// natSampleEvery is how often a NAT lab run reads the router's conntrack
// table.
const natSampleEvery = time.Second

// checkLabNAT validates the NAT lab flags.
func checkLabNAT(cfg Config) error {
	if cfg.LabNATPorts == 0 {
		switch {
		case cfg.LabClients != 0:
			return badInput("--lab-clients needs --lab-nat-ports")
		case cfg.LabNATTimeWait != 0:
			return badInput("--lab-nat-tw needs --lab-nat-ports")
		case cfg.LabNATSysctl != "":
			return badInput("--lab-nat-sysctl needs --lab-nat-ports")
		}
		return nil
	}
	switch {
	case !cfg.Lab:
		return badInput("--lab-nat-ports needs --lab: the translator is a router namespace of the lab")
	case cfg.LabNATPorts < 1 || cfg.LabNATPorts > 65535-lab.NATPortStart+1:
		return badInput("bad --lab-nat-ports %d: want 1..%d", cfg.LabNATPorts, 65535-lab.NATPortStart+1)
	case cfg.LabClients < 0 || cfg.LabClients > lab.MaxNATClients:
		return badInput("bad --lab-clients %d: want 1..%d", cfg.LabClients, lab.MaxNATClients)
	case cfg.LabNATTimeWait < 0 || cfg.LabNATTimeWait%time.Second != 0:
		return badInput("bad --lab-nat-tw %s: want whole seconds", cfg.LabNATTimeWait)
	case cfg.LabFirewallIdle != 0:
		return badInput("--lab-nat-ports and --lab-firewall-idle exclude each other")
	}
	return nil
}

// DefaultNATSysctl is the sysctl profile of a NAT lab's router.
const DefaultNATSysctl = "nat-default"

// labNAT returns the lab's translator for cfg, nil without --lab-nat-ports:
// the router's sysctl profile (--lab-nat-sysctl), with --lab-nat-tw on top.
func labNAT(cfg Config) (*lab.NATOptions, error) {
	if cfg.LabNATPorts == 0 {
		return nil, nil
	}
	name := cfg.LabNATSysctl
	if name == "" {
		name = DefaultNATSysctl
	}
	sys, err := labSysctls(name, cfg.ProfilesDir)
	if err != nil {
		return nil, err
	}
	n := &lab.NATOptions{Ports: cfg.LabNATPorts, Clients: max(cfg.LabClients, 1), Sysctls: sys}
	if cfg.LabNATTimeWait > 0 {
		n.Sysctls["net.netfilter.nf_conntrack_tcp_timeout_time_wait"] = strconv.Itoa(int(cfg.LabNATTimeWait / time.Second))
	}
	return n, nil
}

// natRecorder reads the router's conntrack table every natSampleEvery
// into a results.NAT until finish.
type natRecorder struct {
	ct    *sampler.Conntrack
	nat   *results.NAT
	first *sampler.ConntrackSnapshot
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
	err   error
}

// recordNAT opens the router's conntrack table and starts sampling it.
func (e *labEnv) recordNAT() (*natRecorder, error) {
	ct, err := sampler.OpenConntrack(e.l.NSPath(e.l.RouterNS))
	if err != nil {
		return nil, fmt.Errorf("lab: read the router's conntrack table: %w", err)
	}
	r := &natRecorder{ct: ct, start: time.Now(), stop: make(chan struct{}),
		nat: &results.NAT{Ports: e.l.NATPortRange[1] - e.l.NATPortRange[0] + 1, PortLow: e.l.NATPortRange[0],
			Clients: len(e.l.ClientNSs), RouterSysctls: e.l.RouterApplied}}
	if r.first, err = ct.Snapshot(); err != nil {
		ct.Close()
		return nil, err
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(natSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
			}
			snap, err := ct.Snapshot()
			if err != nil {
				r.err = err
				return
			}
			r.nat.Samples = append(r.nat.Samples, natSample(snap, r.first, time.Since(r.start)))
		}
	}()
	return r, nil
}

// finish stops the sampling, takes a last sample, sums up the record and
// closes the table; it returns the error that stopped the sampling, if
// any.
func (r *natRecorder) finish() error {
	close(r.stop)
	r.wg.Wait()
	if last, err := r.ct.Snapshot(); err == nil {
		r.nat.Samples = append(r.nat.Samples, natSample(last, r.first, time.Since(r.start)))
	} else if r.err == nil {
		r.err = err
	}
	r.ct.Close()
	for _, s := range r.nat.Samples {
		r.nat.PeakHeld = max(r.nat.PeakHeld, s.Held)
		r.nat.PeakEntries = max(r.nat.PeakEntries, s.Entries)
		r.nat.InsertFailed, r.nat.Drop, r.nat.EarlyDrop, r.nat.ClashResolve = s.InsertFailed, s.Drop, s.EarlyDrop, s.ClashResolve
	}
	return r.err
}

// natNote is the note that describes the translator of a NAT lab run.
func (e *labEnv) natNote(nat *results.NAT) string {
	return fmt.Sprintf("NAT: %d client namespace(s) behind router %s, masqueraded to %s ports %d-%d; router sysctls %v; conntrack: peak %d entries, peak %d holding a translated port, insert_failed %d, drop %d, early_drop %d",
		nat.Clients, e.l.RouterNS, e.l.RouterServerAddr, e.l.NATPortRange[0], e.l.NATPortRange[1], e.l.RouterApplied, nat.PeakEntries, nat.PeakHeld, nat.InsertFailed, nat.Drop, nat.EarlyDrop)
}

// runNAT runs the load generator in every client namespace of a NAT lab at
// once, reads the router's conntrack table every second meanwhile, and
// merges the clients' documents into one (package fleet) with the
// translator's record.
func (e *labEnv) runNAT(ctx context.Context, cfg Config) (*results.Document, error) {
	rec, err := e.recordNAT()
	if err != nil {
		return nil, err
	}
	docs, errs := e.runClients(ctx, cfg, step{rate: cfg.Rate, duration: cfg.Duration, pattern: true})
	sampleErr := rec.finish()
	nat := rec.nat

	var in []fleet.Input
	for i, d := range docs {
		if d != nil {
			in = append(in, fleet.Input{Path: fmt.Sprintf("client %d (%s)", i, e.l.ClientNSs[i]), Doc: d})
		}
	}
	if len(in) == 0 {
		return nil, errors.Join(errs...)
	}
	doc := in[0].Doc
	if len(in) > 1 {
		merged, merr := fleet.Merge(in, fleet.Options{Force: true})
		if merr != nil {
			return nil, errors.Join(append(errs, merr)...)
		}
		doc = merged
	}
	e.decorate(doc, cfg)
	doc.Config.LabNATPorts, doc.Config.LabClients = nat.Ports, nat.Clients
	doc.NAT = nat
	doc.Notes = append(doc.Notes, e.natNote(nat))
	if len(in) < len(docs) {
		doc.Notes = append(doc.Notes, fmt.Sprintf("NAT: %d of %d clients reported; the others failed: %v", len(in), len(docs), errors.Join(errs...)))
	}
	if sampleErr != nil {
		doc.Notes = append(doc.Notes, fmt.Sprintf("NAT: conntrack sampling stopped: %v", sampleErr))
	}
	return doc, errors.Join(errs...)
}

// runClients runs step s in every client namespace of the lab at once.
func (e *labEnv) runClients(ctx context.Context, cfg Config, s step) ([]*results.Document, []error) {
	docs := make([]*results.Document, len(e.l.ClientNSs))
	errs := make([]error, len(e.l.ClientNSs))
	var wg sync.WaitGroup
	for i, ns := range e.l.ClientNSs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			docs[i], errs[i] = e.runClientIn(ctx, cfg, s, ns)
		}()
	}
	wg.Wait()
	return docs, errs
}

// natFind is the state of a --find-limit run through a NAT lab.
type natFind struct {
	// ct reads the router's counters around each step.
	ct *sampler.Conntrack
	// steps are the fleet's figures of each step run, in order: one per
	// results.Step the search records.
	steps []results.StepFleet
	// last are every client's documents of the last step run.
	last []*results.Document
}

// natFailClasses are the failures of a find-limit step through a NAT: the
// clients' own ports (EADDRNOTAVAIL, EADDRINUSE) and the translator's
// (connect() ETIMEDOUT: every SYN dropped, facts n5 and n11).
var natFailClasses = []string{loadgen.ClassEADDRNOTAVAIL, loadgen.ClassEADDRINUSE, loadgen.ClassETIMEDOUT}

// probeDialTimeout bounds a find-limit probe's connect(): 1 s, or through
// a NAT lab 3 s, past one SYN retransmission (1 s after the SYN): there a
// SYN may be dropped while flows are closing (fact n2) or answered by the
// server's TIME_WAIT on the reused translated tuple (n3), and is resent.
func (e *labEnv) probeDialTimeout() time.Duration {
	if e.nat != nil {
		return 3 * time.Second
	}
	return time.Second
}

// runStep runs one find-limit step: in the client namespace, or through a
// NAT lab in every client namespace at once (runFleetStep).
func (e *labEnv) runStep(ctx context.Context, cfg Config, s step) (*results.Document, error) {
	if e.nat == nil {
		return e.runClient(ctx, cfg, s)
	}
	return e.runFleetStep(ctx, cfg, s)
}

// steadyFailures counts a find-limit step's failures from its steady
// state on: its port errors; through a NAT lab, every client's port errors
// and connect timeouts (and the step's record counts the clients that
// failed).
func (e *labEnv) steadyFailures(doc *results.Document, from time.Duration) int64 {
	if e.nat == nil {
		return steadyPortErrors(doc, from)
	}
	var n int64
	failed := 0
	for _, d := range e.nat.last {
		k := steadyErrors(d, from, natFailClasses...)
		if k > 0 {
			failed++
		}
		n += k
	}
	if len(e.nat.steps) > 0 {
		e.nat.steps[len(e.nat.steps)-1].SteadyFailed = failed
	}
	return n
}

// runFleetStep runs step s in every client namespace at once, each at the
// step's rate, and returns the worst client's document (the most port
// errors and connect timeouts, then the lowest achieved rate); a step fails
// when any client fails in its steady state (steadyFailures). The fleet's
// figures go to e.nat.steps, the clients' documents to e.nat.last.
func (e *labEnv) runFleetStep(ctx context.Context, cfg Config, s step) (*results.Document, error) {
	before, _, _, berr := e.nat.ct.Stats()
	docs, errs := e.runClients(ctx, cfg, s)
	after, _, _, aerr := e.nat.ct.Stats()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := errors.Join(berr, aerr); err != nil {
		return nil, fmt.Errorf("lab: read the router's conntrack counters: %w", err)
	}
	fs := results.StepFleet{Clients: len(docs), Errors: map[string]int64{},
		RouterDrop: after.Drop - before.Drop, RouterInsertFailed: after.InsertFailed - before.InsertFailed}
	worst, worstFails := 0, int64(-1)
	for i, d := range docs {
		fails := steadyErrors(d, 0, natFailClasses...)
		if fails > 0 {
			fs.Failed++
		}
		for _, t := range d.Targets {
			for k, v := range t.Errors {
				fs.Errors[k] += v
			}
		}
		if fails > worstFails || (fails == worstFails && d.AchievedRate < docs[worst].AchievedRate) {
			worst, worstFails = i, fails
		}
	}
	fs.Worst = worst
	e.nat.steps = append(e.nat.steps, fs)
	e.nat.last = docs
	return docs[worst], nil
}

// findLimitNAT is --find-limit through a NAT lab: the single client's
// search (findLimit) with every step run by every client at once
// (runStep), the router's conntrack table recorded throughout, and the
// model's prediction for the fleet: the lower of each client's own ports
// and the translator's stages (natFindPrediction).
func (e *labEnv) findLimitNAT(ctx context.Context, cfg Config, p *plan) (*results.Document, error) {
	rec, err := e.recordNAT()
	if err != nil {
		return nil, err
	}
	ct, err := sampler.OpenConntrack(e.l.NSPath(e.l.RouterNS))
	if err != nil {
		rec.finish()
		return nil, fmt.Errorf("lab: read the router's conntrack table: %w", err)
	}
	e.nat = &natFind{ct: ct}
	doc, ferr := e.findLimit(ctx, cfg, p)
	steps := e.nat.steps
	e.nat = nil
	ct.Close()
	sampleErr := rec.finish()
	if doc == nil {
		return nil, ferr
	}
	nat := rec.nat
	if len(doc.Steps) == len(steps) {
		for i := range doc.Steps {
			doc.Steps[i].Fleet = &steps[i]
		}
	} else {
		doc.Notes = append(doc.Notes, fmt.Sprintf("NAT: %d steps recorded, %d fleet steps run: the fleet figures are not attached", len(doc.Steps), len(steps)))
	}
	doc.Config.LabNATPorts, doc.Config.LabClients = nat.Ports, nat.Clients
	doc.NAT = nat
	nat.FindLimit = natFindPrediction(doc, p, e.l)
	doc.Notes = append(doc.Notes, e.natNote(nat),
		fmt.Sprintf("NAT find-limit: every step ran in the %d client namespaces at once, each at the step's rate per target; each step records its worst client (steps[].fleet has the fleet's errors and the router's drops); the rates are per client per target", nat.Clients))
	switch {
	case nat.FindLimit.MeasuredRate != nil || nat.Drop == 0:
	case nat.PeakHeld >= nat.Ports:
		doc.Notes = append(doc.Notes, fmt.Sprintf("NAT find-limit: no exhaustion rate, but the router dropped %d SYNs (insert_failed %d) with all %d translated ports held at once: open flows held every translated port (facts n5, n6), a limit on concurrent flows (pools x clients), not on the write rate",
			nat.Drop, nat.InsertFailed, nat.Ports))
	default:
		doc.Notes = append(doc.Notes, fmt.Sprintf("NAT find-limit: the router dropped %d SYNs (insert_failed %d) with at most %d of %d translated ports held at a sample: SYNs that came while flows were closing (fact n2), resent 1 s later",
			nat.Drop, nat.InsertFailed, nat.PeakHeld, nat.Ports))
	}
	if sampleErr != nil {
		doc.Notes = append(doc.Notes, fmt.Sprintf("NAT: conntrack sampling stopped: %v", sampleErr))
	}
	return doc, ferr
}

// natFindPrediction compares the model with a NAT find-limit's result: the
// client's own stage is the find-limit's own prediction (with the
// connections per write it measured), or capacity.Predict's without one;
// the translator's stages are capacity.PredictNAT's for the lab's router.
// The lowest binds. The document's predicted exhaustion rate becomes it.
func natFindPrediction(doc *results.Document, p *plan, l *lab.Lab) *results.NATFindLimit {
	out := &results.NATFindLimit{MeasuredRate: doc.Capacity.MeasuredExhaustionRate}
	k, err := capacity.KernelFromSysctl(doc.Sysctl)
	if err != nil {
		out.Explanation = fmt.Sprintf("no prediction: %v", err)
		return out
	}
	cl := capacity.ClientFromProfile(p.client)
	if cl.Pooled && doc.Capacity.NewConnsPerWrite > 0 {
		cl.NewConnsPerWrite = doc.Capacity.NewConnsPerWrite
	}
	tw := capacity.DefaultConntrackTimeWait
	if v, err := strconv.Atoi(l.RouterApplied["net.netfilter.nf_conntrack_tcp_timeout_time_wait"]); err == nil {
		tw = time.Duration(v) * time.Second
	}
	n := capacity.NAT{PortLow: l.NATPortRange[0], PortHigh: l.NATPortRange[1], Addrs: 1, ConntrackTimeWait: tw, Clients: len(l.ClientNSs)}
	if len(doc.NAT.Samples) > 0 {
		n.ConntrackMax = doc.NAT.Samples[0].Max
	}
	pn := capacity.PredictNAT(capacity.Input{Kernel: k, Client: cl, Targets: max(len(doc.Targets), 1)}, n)
	host := pn.Host.ExhaustionRate
	if doc.Capacity.PredictedExhaustionRate != nil {
		host = *doc.Capacity.PredictedExhaustionRate
	}
	rate := func(v float64) *float64 {
		if math.IsInf(v, 1) || v <= 0 {
			return nil
		}
		r := round2(v)
		return &r
	}
	out.HostRate, out.NATRate, out.ConntrackRate = rate(host), rate(pn.NATRate), rate(pn.ConntrackRate)
	best := math.Min(host, math.Min(pn.NATRate, pn.ConntrackRate))
	switch {
	case math.IsInf(best, 1):
	case best == host:
		out.PredictedStage, out.PredictedFailure = capacity.StageHost, capacity.FailPortError
	case best == pn.NATRate:
		out.PredictedStage, out.PredictedFailure = capacity.StageNAT, capacity.FailConnectTimeout
	default:
		out.PredictedStage, out.PredictedFailure = capacity.StageConntrack, capacity.FailConnectTimeout
	}
	out.PredictedRate = rate(best)
	if out.PredictedRate != nil {
		doc.Capacity.PredictedExhaustionRate = out.PredictedRate
	}
	out.Explanation = pn.Explanation
	out.MeasuredFailure = measuredFailure(doc)
	return out
}

// measuredFailure is the failure class of the lowest failing search step
// at or above the measured limit: port-error, connect-timeout, or both
// joined by "+"; "" when none failed.
func measuredFailure(doc *results.Document) string {
	var at *results.Step
	for i := range doc.Steps {
		st := &doc.Steps[i]
		if st.Phase == "burst" || st.Fleet == nil || st.Fleet.SteadyFailed == 0 {
			continue
		}
		if doc.Capacity.MeasuredExhaustionRate != nil && st.Rate < *doc.Capacity.MeasuredExhaustionRate {
			continue
		}
		if at == nil || st.Rate < at.Rate {
			at = st
		}
	}
	if at == nil {
		return ""
	}
	var classes []string
	if at.Fleet.Errors[loadgen.ClassEADDRNOTAVAIL]+at.Fleet.Errors[loadgen.ClassEADDRINUSE] > 0 {
		classes = append(classes, capacity.FailPortError)
	}
	if at.Fleet.Errors[loadgen.ClassETIMEDOUT] > 0 {
		classes = append(classes, capacity.FailConnectTimeout)
	}
	return strings.Join(classes, "+")
}

// natSample summarizes a conntrack snapshot: the busiest group and the
// counters since first.
func natSample(s, first *sampler.ConntrackSnapshot, t time.Duration) results.NATSample {
	out := results.NATSample{T: roundMS(t), Entries: s.Count, Max: s.Max,
		InsertFailed: s.Stats.InsertFailed - first.Stats.InsertFailed, Drop: s.Stats.Drop - first.Stats.Drop,
		EarlyDrop: s.Stats.EarlyDrop - first.Stats.EarlyDrop, ClashResolve: s.Stats.ClashResolve - first.Stats.ClashResolve}
	best := -1
	for i, g := range s.Groups {
		if g.Proto != syscall.IPPROTO_TCP {
			continue
		}
		if b := s.Groups[max(best, 0)]; best < 0 || g.Held > b.Held || (g.Held == b.Held && g.Total > b.Total) {
			best = i
		}
	}
	if best >= 0 {
		g := s.Groups[best]
		out.Held, out.TimeWait, out.Close = g.Held, g.States["TIME_WAIT"], g.States["CLOSE"]
	}
	return out
}

func roundMS(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }
