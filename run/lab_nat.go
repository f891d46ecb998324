package run

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/loadcap/loadcap/fleet"
	"github.com/loadcap/loadcap/lab"
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
	case cfg.FindLimit:
		return badInput("--find-limit with --lab-nat-ports is not supported yet: run fixed rates through the NAT lab and compare with `loadcap capacity --nat-ports`")
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

// runNAT runs the load generator in every client namespace of a NAT lab at
// once, reads the router's conntrack table every second meanwhile, and
// merges the clients' documents into one (package fleet) with the
// translator's record.
func (e *labEnv) runNAT(ctx context.Context, cfg Config) (*results.Document, error) {
	ct, err := sampler.OpenConntrack(e.l.NSPath(e.l.RouterNS))
	if err != nil {
		return nil, fmt.Errorf("lab: read the router's conntrack table: %w", err)
	}
	defer ct.Close()
	nat := &results.NAT{Ports: e.l.NATPortRange[1] - e.l.NATPortRange[0] + 1, PortLow: e.l.NATPortRange[0],
		Clients: len(e.l.ClientNSs), RouterSysctls: e.l.RouterApplied}
	first, err := ct.Snapshot()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	stop := make(chan struct{})
	var sampleErr error
	var swg sync.WaitGroup
	swg.Add(1)
	go func() {
		defer swg.Done()
		t := time.NewTicker(natSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			snap, err := ct.Snapshot()
			if err != nil {
				sampleErr = err
				return
			}
			nat.Samples = append(nat.Samples, natSample(snap, first, time.Since(start)))
		}
	}()

	docs := make([]*results.Document, len(e.l.ClientNSs))
	errs := make([]error, len(e.l.ClientNSs))
	var wg sync.WaitGroup
	for i, ns := range e.l.ClientNSs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			docs[i], errs[i] = e.runClientIn(ctx, cfg, step{rate: cfg.Rate, duration: cfg.Duration, pattern: true}, ns)
		}()
	}
	wg.Wait()
	close(stop)
	swg.Wait()
	if last, err := ct.Snapshot(); err == nil {
		nat.Samples = append(nat.Samples, natSample(last, first, time.Since(start)))
	} else if sampleErr == nil {
		sampleErr = err
	}
	for _, s := range nat.Samples {
		nat.PeakHeld = max(nat.PeakHeld, s.Held)
		nat.PeakEntries = max(nat.PeakEntries, s.Entries)
		nat.InsertFailed, nat.Drop, nat.EarlyDrop, nat.ClashResolve = s.InsertFailed, s.Drop, s.EarlyDrop, s.ClashResolve
	}

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
	doc.Notes = append(doc.Notes, fmt.Sprintf("NAT: %d client namespace(s) behind router %s, masqueraded to %s ports %d-%d; router sysctls %v; conntrack: peak %d entries, peak %d holding a translated port, insert_failed %d, drop %d, early_drop %d",
		nat.Clients, e.l.RouterNS, e.l.RouterServerAddr, e.l.NATPortRange[0], e.l.NATPortRange[1], e.l.RouterApplied, nat.PeakEntries, nat.PeakHeld, nat.InsertFailed, nat.Drop, nat.EarlyDrop))
	if len(in) < len(docs) {
		doc.Notes = append(doc.Notes, fmt.Sprintf("NAT: %d of %d clients reported; the others failed: %v", len(in), len(docs), errors.Join(errs...)))
	}
	if sampleErr != nil {
		doc.Notes = append(doc.Notes, fmt.Sprintf("NAT: conntrack sampling stopped: %v", sampleErr))
	}
	return doc, errors.Join(errs...)
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
