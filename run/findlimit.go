package run

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"time"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/lab"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/profiles"
	"github.com/loadcap/loadcap/results"
)

// Find-limit bounds: every phase is bounded in count and time.
const (
	maxHoldProbe = 75 * time.Second // TIME_WAIT is 60 s; anything longer is reported as such
	probeEvery   = 20 * time.Millisecond
	// scoutDur is a scouting step's length: ten whole timeline intervals,
	// enough to measure a churning pool's churn and dispersion.
	scoutDur = 12 * time.Second
	// maxBursts bounds the bursts tried when the machine cannot start a
	// burst's writes in time.
	maxBursts = 3
)

// busySlots bounds the find-limit phases that need the CPU (bursts, and
// steps of more than busyRate writes/s over all targets) running at once on
// the machine, across loadcap processes (lab.AcquireBusy), to one per two
// CPUs. A matrix's cells run side by side, but most of their time is
// TIME_WAIT-bound steps of a few writes/s, or waiting for ports to come
// back; a burst that shares the CPU runs too slowly to see the budget, and
// a step of hundreds of writes/s that shares it stalls, then fires the
// writes it owes at once: with a 1 s reuse delay that alone runs out of
// ports (close-client with tw-reuse measured 140 writes/s of 200 with twelve
// cells sharing two CPUs).
var busySlots = max(1, runtime.NumCPU()/2)

// busyRate is the write rate, over all targets, from which a step takes a
// busy slot.
const busyRate = 50

// burst runs a burst step in a busy slot.
func (e *labEnv) burst(ctx context.Context, cfg Config, s step) (*results.Document, error) {
	return e.runBusy(ctx, cfg, s, true)
}

// runBusy runs a step, through busyGate when busy.
func (e *labEnv) runBusy(ctx context.Context, cfg Config, s step, busy bool) (*results.Document, error) {
	if busy {
		release, err := lab.AcquireBusy(ctx, busySlots)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	return e.runStep(ctx, cfg, s)
}

// notStarted counts the writes a run could not start in time.
func notStarted(doc *results.Document) int64 {
	var n int64
	for _, t := range doc.Targets {
		n += t.Errors[loadgen.ClassNotStarted]
	}
	return n
}

// findLimit measures the exhaustion rate by traffic: a burst to measure the
// usable port budget, probes to measure how long until a port comes back
// (the hold time), then steps placed by capacity.Search, each longer than
// the hold time. Steps run back to back, so no step waits for TIME_WAIT to
// drain: after a step that ran out of ports (or the burst), the next step's
// port errors count from one hold time into it on, when the ports the
// previous step held are free again (see steadyPortErrors); after a step
// that held, the ports a step needs only grow from its start and every
// port error counts.
func (e *labEnv) findLimit(ctx context.Context, cfg Config, p *plan) (*results.Document, error) {
	ports := e.l.PortRange[1] - e.l.PortRange[0] + 1
	var steps []results.Step
	shared := p.client.SharesPorts()
	var hold time.Duration // measured after the burst
	record := func(doc *results.Document, phase string, rate float64, d, from time.Duration) {
		st := results.Step{Rate: round2(rate), AchievedRate: doc.AchievedRate, DurationS: d.Seconds(), Errors: map[string]int64{}, Phase: phase,
			NewConnsPerWrite: math.Round(connsPerWrite(doc)*1e5) / 1e5,
			Dispersion:       math.Round(churnDispersion(doc, shared)*100) / 100,
			SteadyFromS:      math.Round(from.Seconds()*100) / 100, SteadyPortErrors: steadyPortErrors(doc, from)}
		// The ports held are the step's own once the previous step's are
		// free again: one hold time into the step, whatever came before.
		st.HeldMean, st.HeldSD, st.HeldPeak = heldPorts(doc, max(from, hold), shared)
		for _, t := range doc.Targets {
			for k, v := range t.Errors {
				st.Errors[k] += v
			}
			if t.PeakTimeWait > st.PeakTimeWait {
				st.PeakTimeWait = t.PeakTimeWait
			}
		}
		steps = append(steps, st)
	}

	// 1. Burst: three times the range as fast as the machine allows, in far
	// less than a hold time, so that no port can come back during it.
	burstRate := math.Min(math.Max(float64(ports)*20, 200), 20000)
	burstDur := time.Duration(float64(3*ports) / burstRate * float64(time.Second))
	if burstDur < 300*time.Millisecond {
		burstDur = 300 * time.Millisecond
	}
	var burst *results.Document
	var budget, starved int
	var exhausted bool
	for attempt := 1; ; attempt++ {
		var err error
		burst, err = e.burst(ctx, cfg, step{rate: burstRate, duration: burstDur})
		if err != nil {
			return nil, err
		}
		record(burst, "burst", burstRate, burstDur, 0)
		budget, exhausted = burstBudget(burst, shared)
		starved = int(notStarted(burst))
		if exhausted || starved == 0 || attempt == maxBursts {
			break
		}
		// The machine could not start the burst's writes in time (busy):
		// the ports it held drain before the next one, so that it starts
		// with the whole range again.
		if err := e.waitDrained(ctx, maxHoldProbe); err != nil {
			return nil, err
		}
	}
	burstStart := burst.StartedAt
	if !exhausted {
		e.decorate(burst, cfg)
		burst.Config.FindLimit = true
		burst.Steps = steps
		if starved > 0 {
			// Nothing is concluded from a burst that did not run.
			burst.Notes = append(burst.Notes, fmt.Sprintf("find-limit: %d burst(s) of %.0f writes/s per target could not start %d of their writes in time (the machine is too busy): the exhaustion rate was not measured",
				maxBursts, burstRate, starved))
			return burst, errors.Join(ctx.Err(), fmt.Errorf("find-limit: the burst could not start %d of its writes in %d attempts: machine too busy", starved, maxBursts))
		}
		// This client does not run out of ports (keep-alive pool, server
		// closes first, linger0, ...): say so with the evidence.
		burst.Notes = append(burst.Notes, fmt.Sprintf("find-limit: a burst of %.0f writes/s per target for %s opened %d connections per target without a port error: no exhaustion rate for this client and sysctl profile",
			burstRate, burstDur, minConns(burst)))
		return burst, ctx.Err()
	}
	// A burst slower than the hold (a busy machine, a 1 s reuse delay) saw
	// ports come back during it: no pool has more than the range.
	budget = min(budget, ports)

	// 2. Hold: probe (same dial mode as the client) until a port comes back.
	var err error
	hold, err = e.probeHold(ctx, p.client, burstStart)
	if err != nil {
		return nil, err
	}
	// The burst's ports are all free again one hold after its last
	// connection, plus the TIME_WAIT timer's batching (sockets expire in
	// batches about 2 s apart).
	burstFree := burstStart.Add(hold + burstDur + 3*time.Second)
	share := 1.0
	if shared {
		share = float64(len(e.urls))
	}
	poolPorts := float64(budget) * share

	// 3. Steps. At least 12 s: ten whole timeline intervals inside a step,
	// so the churn's dispersion is measured even when the hold is a 1 s
	// reuse delay; and a fifth of the hold past the hold, so every step has
	// that long in its steady state.
	stepDur := time.Duration(math.Max(1.2*hold.Seconds()+2, 12) * float64(time.Second))
	var base *results.Document
	var okRate float64
	inherited := true // the previous step (the burst first) left the ports full
	probe := func(rate float64, phase string) (capacity.ProbeResult, error) {
		d, from := stepDur, time.Duration(0)
		if inherited {
			// Port errors in the first hold time come from the ports the
			// previous step held: only the steady state after it counts.
			// After a step that held, the ports this step needs only grow
			// from the start, and every port error is its own.
			from = hold
		}
		if phase == capacity.PhaseScout {
			// A scout is short: it holds fewer ports than the budget unless
			// far past the limit, and measures the churn.
			d = scoutDur
		}
		doc, err := e.runBusy(ctx, cfg, step{rate: rate, duration: d}, rate*float64(len(e.urls)) > busyRate)
		if err != nil {
			return capacity.ProbeResult{}, err
		}
		if phase == capacity.PhaseScout {
			// A scout holds fewer ports than the budget, with the scouts
			// before it, unless past the limit: its port errors count from
			// the moment the burst's ports are all free again (a scout that
			// waited for the hold counts only from there, and a scout of a
			// TIME_WAIT-bound pool could never run out).
			from = max(0, burstFree.Sub(doc.StartedAt))
		}
		record(doc, phase, rate, d, from)
		st := &steps[len(steps)-1]
		// A step the machine could not run at its rate says nothing of the
		// ports there: it bounds the search like one that ran out.
		overloaded := doc.AchievedRate < 0.9*rate
		st.Overloaded = overloaded
		ranOut := e.steadyFailures(doc, from) > 0
		failed := ranOut || overloaded
		// A scout's ports are held into the next step too.
		inherited = failed || phase == capacity.PhaseScout
		if !failed && phase != capacity.PhaseScout && rate > okRate {
			base, okRate = doc, rate
		}
		held, disp := stepHeld(*st, hold, failed, poolPorts, churnDispersion(doc, shared))
		return capacity.ProbeResult{Failed: failed, RanOut: ranOut, ConnsPerWrite: steadyConnsPerWrite(doc), Dispersion: disp, Held: held}, ctx.Err()
	}
	cpw := connsPerWrite(burst)
	res, serr := capacity.Search(capacity.SearchPlan{
		ConnRate: float64(budget) / hold.Seconds(), ConnsPerWrite: cpw,
		Churns: p.client.Pooled(), Scout: stepDur > 2*scoutDur, FailRate: burstRate,
		Ports: int(math.Round(float64(budget) * share)), HoldS: hold.Seconds(), Share: share,
	}, probe)
	m := &measured{budget: budget, hold: hold, cpw: cpw, rate: res.Rate, low: res.Low, high: res.High,
		cpwOK: res.CPWLow, cpwFail: res.CPWHigh, dispOK: res.DispLow, dispFail: res.DispHigh, heldOK: res.HeldLow, heldFail: res.HeldHigh, ranOut: res.RanOutHigh}
	if res.CPWLow > 0 {
		m.cpw = res.CPWLow
	}
	if res.Steps == 0 && res.Scouts == 0 {
		m = nil
	}
	doc, err := finish(e, cfg, p, base, burst, steps, m, serr)
	for _, st := range steps {
		if st.Overloaded && res.High > 0 && st.Rate == round2(res.High) {
			doc.Notes = append(doc.Notes, fmt.Sprintf("find-limit: the step at %s writes/s per target achieved %s: the machine, not the ports, bounded the search there",
				capacity.FormatRate(st.Rate), capacity.FormatRate(st.AchievedRate)))
		}
	}
	return doc, err
}

type measured struct {
	budget    int
	hold      time.Duration
	cpw       float64
	cpwOK     float64 // new connections per write at low, the highest rate without port errors
	cpwFail   float64 // and at high, the lowest rate with them
	dispOK    float64 // dispersion of the openings at low
	dispFail  float64 // and at high
	heldOK    float64 // mean ports held at low, in its steady state (0: unknown)
	heldFail  float64 // and at high, at least what it held when the range capped it (0: unknown)
	ranOut    bool    // high failed with port errors, not only behind its rate
	rate      float64 // 0 when not bracketed
	low, high float64
}

// finish builds the find-limit document from the best step.
func finish(e *labEnv, cfg Config, p *plan, base, burst *results.Document, steps []results.Step, m *measured, err error) (*results.Document, error) {
	doc := base
	if doc == nil {
		doc = burst
	}
	e.decorate(doc, cfg)
	doc.Config.FindLimit = true
	// The search chose its rates and lengths (recorded per step): no rate
	// was asked, and the run wrote for the steps' total time.
	doc.Config.Rate = 0
	doc.Config.DurationS = 0
	for _, st := range steps {
		doc.Config.DurationS += st.DurationS
	}
	doc.Steps = steps
	if m != nil {
		c := &doc.Capacity
		if m.rate > 0 {
			r := round2(m.rate)
			c.MeasuredExhaustionRate = &r
		}
		if m.low > 0 {
			l := round2(m.low)
			c.MeasuredLow = &l
		}
		if m.high > 0 {
			h := round2(m.high)
			c.MeasuredHigh = &h
		}
		// The model's prediction with the churn measured around the limit.
		if k, kerr := capacity.KernelFromSysctl(doc.Sysctl); kerr == nil && m.cpwFail > 0 {
			cl := capacity.ClientFromProfile(p.client)
			if cl.Pooled {
				cl.NewConnsPerWrite = m.cpwFail // one per write otherwise, by the profile
			}
			in := capacity.Input{Kernel: k, Client: cl, Targets: len(doc.Targets)}
			churning := cl.Pooled && m.low > 0
			var pred capacity.Prediction
			if churning {
				// A churning pool's churn and its burstiness grow with the
				// rate, steeply near the limit, so the churn at one rate
				// predicts nothing: capacity.PredictPool interpolates both
				// between the bracket's two steps, and the limit is where the
				// peaks of the ports held (mean plus two standard deviations)
				// fill the range.
				in, pred = capacity.PredictPool(in, capacity.PoolBracket{Low: m.low, CPWLow: m.cpwOK, DispLow: m.dispOK, HeldLow: m.heldOK,
					High: m.high, CPWHigh: m.cpwFail, DispHigh: m.dispFail, HeldHigh: m.heldFail, RanOut: m.ranOut})
			} else {
				pred = capacity.Predict(in)
			}
			rate := pred.ExhaustionRate
			if churning && pred.BurstRate > 0 {
				rate = pred.BurstRate
			}
			if pred.Finite() && rate > 0 && in.Client.NewConnsPerWrite > 0 {
				r := round2(rate)
				c.PredictedExhaustionRate = &r
				c.NewConnsPerWrite = math.Round(in.Client.NewConnsPerWrite*10000) / 10000
				c.Limit, c.Explanation = pred.Limit, pred.Explanation
				if doc.AchievedRate > 0 {
					h := round2(rate / doc.AchievedRate)
					c.Headroom = &h
				}
			}
		}
		doc.Notes = append(doc.Notes, fmt.Sprintf("find-limit: usable budget %d ports per target, hold %.2f s, %.3g new connections per write: limit %s writes/s per target (no port errors at %s, port errors at %s)",
			m.budget, m.hold.Seconds(), m.cpw, capacity.FormatRate(m.rate), capacity.FormatRate(m.low), capacity.FormatRate(m.high)))
	}
	return doc, err
}

// burstBudget returns the connections a target opened before its port
// range ran out and whether one ran out. With a pool per target it is the
// smallest over the targets that ran out: a target that did not run out
// says nothing of the budget (a churning pool's burst can exhaust one
// target's ports while the other opened a few connections). When the
// targets share one pool (bind before connect) they split it unevenly (92
// and 108 of 200 measured), and each target's share at equal rates is the
// pool over the targets.
func burstBudget(doc *results.Document, shared bool) (int, bool) {
	budget, exhausted := 0, false
	var total int64
	for _, t := range doc.Targets {
		total += t.NewConnections
		if t.Errors[loadgen.ClassEADDRNOTAVAIL]+t.Errors[loadgen.ClassEADDRINUSE] == 0 {
			continue
		}
		if !exhausted || int(t.NewConnections) < budget {
			budget = int(t.NewConnections)
		}
		exhausted = true
	}
	if shared && exhausted && len(doc.Targets) > 0 {
		budget = int(total) / len(doc.Targets)
	}
	return budget, exhausted
}

func minConns(doc *results.Document) int64 {
	var m int64 = -1
	for _, t := range doc.Targets {
		if m < 0 || t.NewConnections < m {
			m = t.NewConnections
		}
	}
	return m
}

// longHold is the hold from which a churning pool's spread is taken from
// the ports it held rather than from its openings per second.
const longHold = 10 * time.Second

// stepHeld returns, for a churning pool's step, the mean of the ports it
// held when that count describes the pool (a long hold; 0 otherwise) and
// the dispersion (variance / mean) the model's peak rule takes. The ports a pool holds are its openings
// over the last hold time; with a hold of a second or two their spread is
// the spread of the openings per timeline interval (perSecond). Over a long
// hold (60 s of TIME_WAIT) it is not: a pool that just opened a burst of
// connections needs none for a while, and the bursts of one second average
// out over sixty, so the openings per second (variance 6 to 15 times the
// mean measured) overstate the spread of the ports held (0.4 to 0.9 times
// the mean measured in the same steps), and the model put the limit 6 to
// 8 % low. For a long hold the spread is measured where it matters: the
// ports the step held in its steady state (from one hold in), when the step
// held below 95 % of the ports and sampled at least five times. A step that
// ran out gives its mean, a lower bound on what it held when the range
// capped it (capacity.PredictPool takes the bracket's high end at least
// there), and no dispersion. Otherwise 0 (unknown) for a long hold, so the
// model takes the other step's.
func stepHeld(st results.Step, hold time.Duration, failed bool, ports, perSecond float64) (held, disp float64) {
	if hold < longHold {
		return 0, perSecond
	}
	if st.HeldMean <= 0 || st.DurationS-hold.Seconds() < 5 {
		return 0, 0
	}
	if failed {
		// The mean is at least what the pool held (a step that ran out
		// had its count capped by the range); its spread says less than
		// the other end's.
		return st.HeldMean, 0
	}
	if st.HeldSD <= 0 || st.HeldMean > 0.95*ports {
		return 0, 0
	}
	return st.HeldMean, st.HeldSD * st.HeldSD / st.HeldMean
}

// steadyPortErrors counts the port errors of the timeline intervals that
// began from into the step or later; from 0, the whole run's.
func steadyPortErrors(doc *results.Document, from time.Duration) int64 {
	return steadyErrors(doc, from, loadgen.ClassEADDRNOTAVAIL, loadgen.ClassEADDRINUSE)
}

// steadyErrors counts the errors of the given classes in the timeline
// intervals that began from into the step or later; from 0, the whole
// run's.
func steadyErrors(doc *results.Document, from time.Duration, classes ...string) int64 {
	var n int64
	if from <= 0 {
		for _, t := range doc.Targets {
			for _, c := range classes {
				n += t.Errors[c]
			}
		}
		return n
	}
	prev := map[string]int64{} // end of each target's previous interval
	for _, iv := range doc.Timeline {
		if time.Duration(prev[iv.Target])*time.Millisecond >= from {
			for _, c := range classes {
				n += iv.Errors[c]
			}
		}
		prev[iv.Target] = iv.TMS
	}
	return n
}

// heldPorts returns the mean, standard deviation and peak of the ports the
// fullest target's pool held (sockets toward it in any state) in the
// sampler's snapshots from from into the step on. With bind before connect
// the targets share one pool: their sockets are summed. When tcp_tw_reuse
// applies (the sampler counted blocked_by_target) and connect() picks the
// port, a TIME_WAIT port older than the reuse delay is free again: the
// ports held are the blocked ones.
func heldPorts(doc *results.Document, from time.Duration, shared bool) (mean, sd float64, peak int) {
	if doc.Sampler == nil {
		return 0, 0, 0
	}
	var xs []float64
	for _, smp := range doc.Sampler.Series {
		if time.Duration(smp.TMS)*time.Millisecond < from || len(smp.ByTarget) == 0 {
			continue
		}
		held, total := 0, 0
		if smp.BlockedByTarget != nil && !shared {
			for _, n := range smp.BlockedByTarget {
				held = max(held, n)
			}
		} else {
			for _, states := range smp.ByTarget {
				n := 0
				for _, v := range states {
					n += v
				}
				held = max(held, n)
				total += n
			}
		}
		if shared {
			held = total
		}
		xs = append(xs, float64(held))
		peak = max(peak, held)
	}
	if len(xs) == 0 {
		return 0, 0, 0
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		sd += (x - mean) * (x - mean)
	}
	if len(xs) > 1 {
		sd = math.Sqrt(sd / float64(len(xs)-1))
	}
	return math.Round(mean*10) / 10, math.Round(sd*10) / 10, peak
}

// steadyConnsPerWrite is new connections per successful write after each
// target's first timeline interval, where a pool fills up: the churn of a
// pool in use. Without a timeline, over the whole run.
func steadyConnsPerWrite(doc *results.Document) float64 {
	var conns, ok int64
	seen := map[string]bool{}
	for _, iv := range doc.Timeline {
		if !seen[iv.Target] {
			seen[iv.Target] = true
			continue
		}
		conns += iv.NewConns
		ok += iv.OK
	}
	if len(doc.Timeline) == 0 {
		return connsPerWrite(doc)
	}
	if ok == 0 {
		return 0
	}
	return float64(conns) / float64(ok)
}

func portErrors(doc *results.Document) int64 {
	var n int64
	for _, t := range doc.Targets {
		n += t.Errors[loadgen.ClassEADDRNOTAVAIL] + t.Errors[loadgen.ClassEADDRINUSE]
	}
	return n
}

// connsPerWrite is new connections per successful write, over all targets.
func connsPerWrite(doc *results.Document) float64 {
	var conns, ok int64
	for _, t := range doc.Targets {
		conns += t.NewConnections
		ok += t.WritesOK
	}
	if ok == 0 {
		return 0
	}
	return float64(conns) / float64(ok)
}

// probeHold connects from the client namespace, with the client's dial
// mode, until a port is free again, and returns the time since the burst
// began: how long a closed port stays unusable. When the very first probe
// already succeeds the probe came too late to see the hold (a short reuse
// delay on a busy machine): the hold is then measured again in this
// process, with a burst of its own and probes right after it.
func (e *labEnv) probeHold(ctx context.Context, c *profiles.Client, since time.Time) (time.Duration, error) {
	hold, first, err := e.probe(ctx, c, since)
	if err != nil || !first {
		return hold, err
	}
	if err := e.settle(ctx, hold); err != nil {
		return 0, err
	}
	release, err := lab.AcquireBusy(ctx, busySlots)
	if err != nil {
		return 0, err
	}
	start, err := e.localBurst(c)
	release()
	if err != nil {
		return 0, err
	}
	hold, _, err = e.probe(ctx, c, start)
	return hold, err
}

func (e *labEnv) dialer(c *profiles.Client) net.Dialer {
	d := net.Dialer{Timeout: e.probeDialTimeout()}
	if c.DialModeOrDefault() != profiles.DialConnect {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4zero}
	}
	return d
}

func isPortError(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EADDRINUSE)
}

// localBurst opens and closes (client first) connections from the client
// namespace until the ports run out, and returns when the first one closed.
func (e *labEnv) localBurst(c *profiles.Client) (time.Time, error) {
	dst := netip.AddrPortFrom(e.l.ServerAddrs[0], labPort).String()
	ports := e.l.PortRange[1] - e.l.PortRange[0] + 1
	d := e.dialer(c)
	var first time.Time
	err := lab.Do(e.l.NSPath(e.l.ClientNS), func() error {
		for i := 0; i < 3*ports+16; i++ {
			conn, err := d.Dial("tcp", dst)
			if isPortError(err) {
				return nil
			}
			if err != nil {
				return err
			}
			if first.IsZero() {
				first = time.Now()
			}
			conn.Close()
		}
		return fmt.Errorf("%d connections without running out of ports", 3*ports+16)
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("find-limit: burst to %s: %w", dst, err)
	}
	return first, nil
}

// probe connects every probeEvery until a port is free, and returns the
// time since since and whether the first attempt already succeeded.
func (e *labEnv) probe(ctx context.Context, c *profiles.Client, since time.Time) (time.Duration, bool, error) {
	dst := netip.AddrPortFrom(e.l.ServerAddrs[0], labPort).String()
	ns := e.l.NSPath(e.l.ClientNS)
	d := e.dialer(c)
	deadline := since.Add(maxHoldProbe)
	for attempt := 0; ; attempt++ {
		err := lab.Do(ns, func() error {
			conn, err := d.Dial("tcp", dst)
			if err != nil {
				return err
			}
			conn.(*net.TCPConn).SetLinger(0) // RST: the probe leaves no TIME_WAIT
			return conn.Close()
		})
		if err == nil {
			return time.Since(since), attempt == 0, nil
		}
		if !isPortError(err) {
			return 0, false, fmt.Errorf("find-limit: probe %s: %w", dst, err)
		}
		if time.Now().After(deadline) {
			return 0, false, fmt.Errorf("find-limit: no port came back within %s", maxHoldProbe)
		}
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-time.After(probeEvery):
		}
	}
}

// settle waits until ports held by the previous step are free again: until
// no TIME_WAIT is left when the hold is TIME_WAIT itself, or two hold times
// when ports are reused sooner.
func (e *labEnv) settle(ctx context.Context, hold time.Duration) error {
	if hold >= 10*time.Second {
		return e.waitDrained(ctx, maxHoldProbe)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2*hold + time.Second):
		return nil
	}
}
