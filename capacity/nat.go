package capacity

import (
	"fmt"
	"math"
	"time"
)

// Stages a NATPrediction names as the one that runs out first.
const (
	// StageHost: the client's own ports (its TIME_WAIT, its range).
	StageHost = "host"
	// StageNAT: the translator's ports per (translated address,
	// destination).
	StageNAT = "nat"
	// StageConntrack: the translator's connection tracking table
	// (nf_conntrack_max).
	StageConntrack = "conntrack"
)

// Failure classes: what the clients see when a stage runs out.
const (
	// FailPortError: connect() EADDRNOTAVAIL (bind() EADDRINUSE) at once.
	FailPortError = "port-error"
	// FailConnectTimeout: the translator drops the SYN (conntrack
	// insert_failed and drop when its ports run out; drop alone when its
	// table is full of ASSURED entries), the client retransmits and
	// connect() ends in ETIMEDOUT after its SYN retries.
	FailConnectTimeout = "connect-timeout"
)

// Conntrack timeouts the NAT stage uses (Linux defaults).
const (
	// DefaultConntrackTimeWait is nf_conntrack_tcp_timeout_time_wait.
	DefaultConntrackTimeWait = 120 * time.Second
	// DefaultConntrackClose is nf_conntrack_tcp_timeout_close: how long
	// the entry of a flow closed by a RST stays.
	DefaultConntrackClose = 10 * time.Second
)

// NAT is a translator (SNAT or masquerade, a Kubernetes node or a NAT
// gateway) in front of Clients identical clients.
type NAT struct {
	// PortLow and PortHigh are the translated port range, inclusive.
	PortLow, PortHigh int
	// Addrs is the number of translated addresses (at least 1).
	Addrs int
	// ConntrackTimeWait is nf_conntrack_tcp_timeout_time_wait (0: the
	// default, 120 s).
	ConntrackTimeWait time.Duration
	// ConntrackMax is nf_conntrack_max, the table size shared by every
	// flow through the translator (0: unbounded).
	ConntrackMax int
	// Clients is how many clients share the translator, each writing at
	// the same rate (at least 1).
	Clients int
	// NoEvict models a kernel that does not evict conntrack entries in
	// TIME_WAIT or CLOSE when the translated ports run out (before
	// nf_nat_used_tuple_harder): every closed flow then holds its port
	// for the conntrack timeout. False is this kernel's behaviour (see
	// docs/nat.md, facts n1-n4).
	NoEvict bool
}

// Ports is the translated ports per destination: range x addresses.
func (n NAT) Ports() int {
	p := n.PortHigh - n.PortLow + 1
	if p < 0 {
		p = 0
	}
	return p * max(n.Addrs, 1)
}

func (n NAT) timeWait() float64 {
	if n.ConntrackTimeWait <= 0 {
		return DefaultConntrackTimeWait.Seconds()
	}
	return n.ConntrackTimeWait.Seconds()
}

// NATPrediction is the model's answer for clients behind a translator. The
// rates are writes/s per client per target.
type NATPrediction struct {
	// Host is the prediction for one client's own ports.
	Host Prediction
	// NATPorts is the translated ports per destination (range x addresses).
	NATPorts int
	// NATHoldS is how long a flow holds its translated port, in seconds
	// (its lifetime, plus the conntrack timeout without eviction).
	NATHoldS float64
	// NATRate is the write rate per client per target at which the
	// translated ports run out; math.Inf(1) when they never do.
	NATRate float64
	// ConntrackRate is the write rate per client per target at which the
	// conntrack table fills; math.Inf(1) when it never does.
	ConntrackRate float64
	// ExhaustionRate is the lowest of the three: where the first stage
	// runs out.
	ExhaustionRate float64
	// Binds is the stage that runs out first (Stage*), "" when none does.
	Binds string
	// Failure is what the clients see then (Fail*), "" when nothing runs
	// out.
	Failure string
	// Explanation says in one line which stage binds and why.
	Explanation string
}

// PredictNAT combines the client's own stage (Predict(in)) with the
// translator's: every flow of every client takes a translated port per
// destination until it reaches TIME_WAIT or CLOSE (on this kernel; for the
// conntrack timeout on kernels that do not evict), and a conntrack entry
// until its timeout or its eviction.
func PredictNAT(in Input, n NAT) NATPrediction {
	host := Predict(in)
	targets := max(in.Targets, 1)
	clients := float64(max(n.Clients, 1))
	c := in.Client
	ncpw := c.NewConnsPerWrite
	life := c.ConnLifetime.Seconds()
	inf := math.Inf(1)
	p := NATPrediction{Host: host, NATPorts: n.Ports(), NATRate: inf, ConntrackRate: inf}

	// How long a closed flow's conntrack entry stays, and whether it
	// holds the translated port meanwhile.
	entry := n.timeWait()
	if c.Linger0 {
		entry = DefaultConntrackClose.Seconds()
	}
	p.NATHoldS = life
	if n.NoEvict {
		p.NATHoldS += entry
	}

	// Flows per second per destination through the translator, per unit
	// of write rate per client per target.
	flowsPerRate := clients * ncpw
	if ncpw > 0 && p.NATPorts > 0 && p.NATHoldS > 0 {
		p.NATRate = float64(p.NATPorts) / p.NATHoldS / flowsPerRate
	}
	if p.NATPorts == 0 {
		p.NATRate = 0
	}
	// Conntrack entries: each flow's entry lives lifetime + timeout; with
	// eviction the closed ones are capped at one per translated port and
	// destination.
	if ncpw > 0 && n.ConntrackMax > 0 {
		capped := !n.NoEvict && p.NATPorts*targets < n.ConntrackMax
		if !capped {
			p.ConntrackRate = float64(n.ConntrackMax) / (life + entry) / flowsPerRate / float64(targets)
		}
	}

	p.ExhaustionRate = math.Min(host.ExhaustionRate, math.Min(p.NATRate, p.ConntrackRate))
	switch {
	case math.IsInf(p.ExhaustionRate, 1):
	case p.ExhaustionRate == host.ExhaustionRate:
		p.Binds, p.Failure = StageHost, FailPortError
	case p.ExhaustionRate == p.NATRate:
		p.Binds, p.Failure = StageNAT, FailConnectTimeout
	default:
		p.Binds, p.Failure = StageConntrack, FailConnectTimeout
	}
	p.Explanation = natExplanation(p, in, n, entry)
	return p
}

func natExplanation(p NATPrediction, in Input, n NAT, entry float64) string {
	clients := max(n.Clients, 1)
	life := in.Client.ConnLifetime.Seconds()
	ports := fmt.Sprintf("%d translated ports per destination (%d-%d x %d address(es))", p.NATPorts, n.PortLow, n.PortHigh, max(n.Addrs, 1))
	var nat string
	switch {
	case p.NATPorts == 0:
		nat = "translator: empty translated port range"
	case in.Client.NewConnsPerWrite <= 0:
		nat = fmt.Sprintf("translator: the pools open no flow per write; their open connections (%d clients x pool) must stay below %s", clients, ports)
	case n.NoEvict:
		nat = fmt.Sprintf("translator without TIME_WAIT eviction: each flow holds its port %.3g s (conntrack timeout %.3g s + lifetime %.3g s): %s / %.3g s / %d clients / %.3g new conns per write = %s writes/s per client",
			p.NATHoldS, entry, life, ports, p.NATHoldS, clients, in.Client.NewConnsPerWrite, fmtRate(p.NATRate))
	case math.IsInf(p.NATRate, 1):
		old := float64(p.NATPorts) / (entry + life) / float64(clients) / in.Client.NewConnsPerWrite
		nat = fmt.Sprintf("translator: a closed flow's conntrack entry (TIME_WAIT, or CLOSE after a RST) is evicted when the ports run out, so closed flows hold no translated port; only open or closing flows do, at most %s (a kernel without that eviction would run out at %s writes/s per client)", ports, fmtRate(old))
	default:
		nat = fmt.Sprintf("translator: closed flows' entries are evicted, open ones hold their port %.3g s: %s / %.3g s / %d clients / %.3g new conns per write = %s writes/s per client",
			life, ports, life, clients, in.Client.NewConnsPerWrite, fmtRate(p.NATRate))
	}
	ct := "conntrack table: unbounded"
	switch {
	case n.ConntrackMax > 0 && math.IsInf(p.ConntrackRate, 1) && in.Client.NewConnsPerWrite > 0:
		ct = fmt.Sprintf("conntrack table: at most one closed entry per translated port and destination (%d) < nf_conntrack_max %d, never full", p.NATPorts*max(in.Targets, 1), n.ConntrackMax)
	case n.ConntrackMax > 0 && !math.IsInf(p.ConntrackRate, 1):
		ct = fmt.Sprintf("conntrack table: nf_conntrack_max %d / %.3g s per entry / %d clients / %d target(s) = %s writes/s per client", n.ConntrackMax, entry+life, clients, max(in.Targets, 1), fmtRate(p.ConntrackRate))
	case n.ConntrackMax > 0:
		ct = fmt.Sprintf("conntrack table: nf_conntrack_max %d, no new flows per write", n.ConntrackMax)
	}
	host := fmt.Sprintf("each client's own ports: %s writes/s per target (%s)", fmtRate(p.Host.ExhaustionRate), p.Host.Limit)
	if !p.Host.Finite() {
		host = fmt.Sprintf("each client's own ports: never run out from the write rate (%s)", p.Host.Limit)
	}
	var first string
	switch p.Binds {
	case StageHost:
		first = fmt.Sprintf("the clients' own ports run out first, at %s writes/s per client per target (connect() EADDRNOTAVAIL, bind() EADDRINUSE)", fmtRate(p.ExhaustionRate))
	case StageNAT:
		first = fmt.Sprintf("the translator's ports run out first, at %s writes/s per client per target (%s fleet flows/s per destination): SYNs dropped (conntrack insert_failed, drop), clients see connect timeouts", fmtRate(p.ExhaustionRate), fmtRate(p.ExhaustionRate*float64(clients)*in.Client.NewConnsPerWrite))
	case StageConntrack:
		first = fmt.Sprintf("the translator's conntrack table fills first, at %s writes/s per client per target: its entries are flows that completed their handshake (ASSURED), which a new flow does not early-drop, so the new flows' SYNs are dropped (conntrack drop), clients see connect timeouts", fmtRate(p.ExhaustionRate))
	default:
		first = "no stage runs out from the write rate"
	}
	return first + "; " + host + "; " + nat + "; " + ct
}
