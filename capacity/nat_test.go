package capacity

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestPredictNAT(t *testing.T) {
	def := DefaultKernel()
	perWrite := Client{NewConnsPerWrite: 1, Closer: CloserClient, DialMode: DialConnect}
	node := NAT{PortLow: 1024, PortHigh: 65535, Addrs: 1, ConntrackTimeWait: 120 * time.Second, ConntrackMax: 262144, Clients: 30}
	with := func(n NAT, f func(*NAT)) NAT { f(&n); return n }
	cl := func(f func(*Client)) Client { c := perWrite; f(&c); return c }
	lab := NAT{PortLow: 50000, PortHigh: 50199, Addrs: 1, ConntrackTimeWait: 30 * time.Second, ConntrackMax: 262144, Clients: 4}
	inf := math.Inf(1)
	const hostRate = 28232.0 / 60

	cases := []struct {
		name     string
		in       Input
		nat      NAT
		natRate  float64
		ctRate   float64
		rate     float64
		binds    string
		failure  string
		explains string
	}{
		// A Kubernetes node: 30 pods behind one address, default conntrack,
		// close-client. This kernel evicts TIME_WAIT entries on a port
		// clash (docs/nat.md n1), so the translator never runs out from
		// closed flows; each pod's own TIME_WAIT binds at 470.5 writes/s.
		{"k8s node, close-client", Input{def, perWrite, 1, false}, node, inf, inf, hostRate, StageHost, FailPortError, "a kernel without that eviction would run out at 17.9 writes/s"},
		// The same node on a kernel without eviction: 64,512 ports / 120 s
		// over 30 pods = 17.9 writes/s per pod, below the pods' own 470.5.
		{"k8s node, no eviction", Input{def, perWrite, 1, false}, with(node, func(n *NAT) { n.NoEvict = true }), 64512.0 / 120 / 30, 262144.0 / 120 / 30, 64512.0 / 120 / 30, StageNAT, FailConnectTimeout, "17.9 writes/s per client"},
		// Two translated addresses double the translator's ports.
		{"two addresses, no eviction", Input{def, perWrite, 1, false}, with(node, func(n *NAT) { n.NoEvict = true; n.Addrs = 2 }), 2 * 64512.0 / 120 / 30, 262144.0 / 120 / 30, 2 * 64512.0 / 120 / 30, StageNAT, FailConnectTimeout, "129024 translated ports"},
		// The lab's cell: 200 ports, conntrack TIME_WAIT 30 s, 4 clients.
		{"lab, no eviction", Input{def, perWrite, 1, false}, with(lab, func(n *NAT) { n.NoEvict = true }), 200.0 / 30 / 4, 262144.0 / 30 / 4, 200.0 / 30 / 4, StageNAT, FailConnectTimeout, ""},
		// A RST close leaves a CLOSE entry for 10 s, not 120 s.
		{"linger0, no eviction", Input{def, cl(func(c *Client) { c.Linger0 = true }), 1, false}, with(node, func(n *NAT) { n.NoEvict = true }), 64512.0 / 10 / 30, 262144.0 / 10 / 30, 64512.0 / 10 / 30, StageNAT, FailConnectTimeout, "conntrack timeout 10 s"},
		// Server closes: the client has no TIME_WAIT; with eviction nothing
		// runs out from the rate.
		{"server closes", Input{def, cl(func(c *Client) { c.Closer = CloserServer }), 1, false}, node, inf, inf, inf, "", "", "no stage runs out"},
		// Open flows hold their translated port: with 10 ms connections
		// each pod's own 28,232 ports last to 2.8M writes/s, but the 30
		// pods share 64,512 translated ports: 215k writes/s per pod.
		{"10 ms flows", Input{def, cl(func(c *Client) { c.Closer = CloserServer; c.ConnLifetime = 10 * time.Millisecond }), 1, false}, node, 64512.0 / 0.01 / 30, inf, 64512.0 / 0.01 / 30, StageNAT, FailConnectTimeout, "open ones hold their port"},
		// A keep-alive pool opens no flow per write.
		{"keepalive", Input{def, Client{Pooled: true}, 1, false}, node, inf, inf, inf, "", "", "open no flow per write"},
		// Many destinations fill the conntrack table before anything else:
		// 100 targets x 64,512 closed entries > nf_conntrack_max 100,000.
		{"conntrack fills", Input{def, perWrite, 100, false}, with(node, func(n *NAT) { n.ConntrackMax = 100000 }), inf, 100000.0 / 120 / 30 / 100, 100000.0 / 120 / 30 / 100, StageConntrack, FailConnectTimeout, "nf_conntrack_max 100000"},
		// A full table drops the SYN (docs/nat.md n10-n12): the closed
		// flows' entries are ASSURED, not early-dropped at once.
		{"conntrack fills: what the clients see", Input{def, perWrite, 100, false}, with(node, func(n *NAT) { n.ConntrackMax = 100000 }), inf, 100000.0 / 120 / 30 / 100, 100000.0 / 120 / 30 / 100, StageConntrack, FailConnectTimeout, "(ASSURED), which a new flow does not early-drop, so the new flows' SYNs are dropped (conntrack drop), clients see connect timeouts"},
		// An empty translated range.
		{"empty range", Input{def, perWrite, 1, false}, with(node, func(n *NAT) { n.PortHigh = n.PortLow - 1 }), 0, inf, 0, StageNAT, FailConnectTimeout, "empty translated port range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := PredictNAT(c.in, c.nat)
			if !near(p.NATRate, c.natRate) || !near(p.ConntrackRate, c.ctRate) || !near(p.ExhaustionRate, c.rate) {
				t.Errorf("rates: nat %v conntrack %v exhaustion %v; want %v %v %v", p.NATRate, p.ConntrackRate, p.ExhaustionRate, c.natRate, c.ctRate, c.rate)
			}
			if p.Binds != c.binds || p.Failure != c.failure {
				t.Errorf("binds %q failure %q, want %q %q", p.Binds, p.Failure, c.binds, c.failure)
			}
			if !strings.Contains(p.Explanation, c.explains) {
				t.Errorf("explanation %q lacks %q", p.Explanation, c.explains)
			}
		})
	}
}
