package exporter

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loadcap/loadcap/sampler"
)

// Namespace is the prefix of every metric the exporter serves.
const Namespace = "loadcap"

var destLabels = []string{"view", "destination"}

// metricNames are the names of every metric newDesc made.
var metricNames []string

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	metricNames = append(metricNames, Namespace+"_"+name)
	return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
}

// MetricNames returns the names of the loadcap_ metrics the exporter
// serves (besides the Go runtime's and the process's), sorted.
func MetricNames() []string {
	out := slices.Clone(metricNames)
	slices.Sort(out)
	return out
}

// descs are the metrics built from a State, in the order Collect emits
// them. Per destination metrics carry view and destination; the projection
// (ports, rate, hold, exhaustion, headroom) exists in the client view only.
var (
	descSockets = newDesc("sockets", "TCP sockets toward the destination (client view) or on the local ip:port (server view), by state.",
		"view", "destination", "state")
	descPortsInUse = newDesc("ports_in_use", "Local ports of ip_local_port_range held toward the destination: its connect() pool in use (listening ports in the range count too).",
		destLabels...)
	descPortsAvailable = newDesc("ports_available", "Local ports connect() can still pick toward the destination: the range minus the ports in use toward it (ports are unique per 4-tuple).",
		destLabels...)
	descNewConns = newDesc("new_connections_per_second", "Connections toward the destination that entered TIME_WAIT over the last 10 s, per second: the rate the client's closes take ports out of the pool.",
		destLabels...)
	descAge = newDesc("time_wait_age_seconds", "Age of the destination's TIME_WAIT sockets (60 s minus the time left) at quantile q, interpolated in 5 s buckets.",
		"view", "destination", "q")
	descHold = newDesc("time_wait_hold_seconds", "How long a port closed by the client stays unusable toward the destination: 60 s of TIME_WAIT, or tcp_tw_reuse_delay where tcp_tw_reuse applies.",
		destLabels...)
	descExhaustion = newDesc("projected_exhaustion_connections_per_second", "New connections per second toward the destination at which its port pool runs out (capacity model: one connection per write, client closes first); +Inf when it never does.",
		destLabels...)
	descHeadroom = newDesc("headroom_ratio", "Projected exhaustion rate divided by the observed new connection rate; +Inf when no connection is opened and closed.",
		destLabels...)

	descPortsInRange = newDesc("port_range_ports", "Ports connect() and bind() can pick from ip_local_port_range, minus reserved ports: the pool of each destination for connect(), and the one pool bind() shares.")
	descRangeLow     = newDesc("ip_local_port_range_low", "First port of net.ipv4.ip_local_port_range.")
	descRangeHigh    = newDesc("ip_local_port_range_high", "Last port of net.ipv4.ip_local_port_range.")
	descReserved     = newDesc("ip_local_reserved_ports_in_range", "Ports of net.ipv4.ip_local_reserved_ports inside the range.")
	descBindInUse    = newDesc("bind_ports_in_use", "Distinct local ports of the range held by the watched sockets and listeners together: the pool bind() (bind-before-connect) draws from, shared by all destinations.")
	descBindAvail    = newDesc("bind_ports_available", "Ports of the range not held by any watched socket or listener: what bind() can still take.")
	descListenPorts  = newDesc("listen_ports", "Listening ports inside ip_local_port_range (taken from every destination's pool).")
	descDestinations = newDesc("destinations", "Destinations seen in the last sample, before the top-N cut.")
	descSysctl       = newDesc("sysctl", "Integer sysctls of the sampled network namespace that the projection uses.", "name")

	descSockstat  = newDesc("sockstat_tcp_sockets", "TCP line of /proc/net/sockstat: inuse and tw for the namespace, orphan and alloc for the host.", "kind")
	descCurrEstab = newDesc("tcp_curr_estab", "Tcp CurrEstab of /proc/net/snmp: connections in ESTABLISHED or CLOSE_WAIT.")

	descInfo        = newDesc("exporter_info", "The exporter's socket source and view (value 1).", "source", "view")
	descLastSample  = newDesc("exporter_last_sample_timestamp_seconds", "Unix time of the snapshot this scrape serves.")
	descSamples     = newDesc("exporter_samples_total", "Samples taken.")
	descErrors      = newDesc("exporter_sample_errors_total", "Samples that failed (the previous one is served).")
	descSampleCPU   = newDesc("exporter_sample_cpu_seconds_total", "CPU time (user and system) spent taking samples.")
	descIntervalSet = newDesc("exporter_interval_seconds", "The configured sampling interval; the exporter waits longer when a sample costs more than its CPU budget.")
)

// counterDescs are the cumulative kernel counters, with the Counters field
// each reads.
var counterDescs = []struct {
	desc *prometheus.Desc
	get  func(*sampler.Counters) uint64
}{
	{newDesc("tcp_active_opens_total", "Tcp ActiveOpens: connections opened by connect()."), func(c *sampler.Counters) uint64 { return c.ActiveOpens }},
	{newDesc("tcp_passive_opens_total", "Tcp PassiveOpens: connections accepted."), func(c *sampler.Counters) uint64 { return c.PassiveOpens }},
	{newDesc("tcp_attempt_fails_total", "Tcp AttemptFails: connection attempts that failed after the SYN (refused, timed out). connect() failing with EADDRNOTAVAIL sends no SYN and is not counted."), func(c *sampler.Counters) uint64 { return c.AttemptFails }},
	{newDesc("tcp_estab_resets_total", "Tcp EstabResets: established connections reset."), func(c *sampler.Counters) uint64 { return c.EstabResets }},
	{newDesc("tcpext_tw_total", "TcpExt TW: sockets that finished TIME_WAIT."), func(c *sampler.Counters) uint64 { return c.TW }},
	{newDesc("tcpext_tw_recycled_total", "TcpExt TWRecycled: TIME_WAIT sockets recycled by timestamp (connect() reusing the port under tcp_tw_reuse)."), func(c *sampler.Counters) uint64 { return c.TWRecycled }},
	{newDesc("tcpext_tw_killed_total", "TcpExt TWKilled: TIME_WAIT sockets killed early."), func(c *sampler.Counters) uint64 { return c.TWKilled }},
	{newDesc("tcpext_time_wait_overflow_total", "TcpExt TCPTimeWaitOverflow: closes that skipped TIME_WAIT because tcp_max_tw_buckets was reached."), func(c *sampler.Counters) uint64 { return c.TCPTimeWaitOverflow }},
	{newDesc("tcpext_abort_on_timeout_total", "TcpExt TCPAbortOnTimeout: connections aborted after too many retransmissions or probes."), func(c *sampler.Counters) uint64 { return c.TCPAbortOnTimeout }},
	{newDesc("tcpext_abort_on_close_total", "TcpExt TCPAbortOnClose: connections reset on close with unread data."), func(c *sampler.Counters) uint64 { return c.TCPAbortOnClose }},
}

// exportedStates are the states a destination reports, zero or not, so
// that a series does not vanish when its count falls to 0.
var exportedStates = func() []sampler.State {
	var out []sampler.State
	for st := sampler.Established; st <= sampler.Closing; st++ {
		out = append(out, st)
	}
	return out
}()

// describe sends every descriptor.
func describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSockets, descPortsInUse, descPortsAvailable, descNewConns, descAge, descHold,
		descExhaustion, descHeadroom, descPortsInRange, descRangeLow, descRangeHigh, descReserved, descBindInUse, descBindAvail,
		descListenPorts, descDestinations, descSysctl, descSockstat, descCurrEstab, descInfo, descLastSample, descSamples,
		descErrors, descSampleCPU, descIntervalSet} {
		ch <- d
	}
	for _, c := range counterDescs {
		ch <- c.desc
	}
}

// collectState sends the metrics of one State.
func collectState(ch chan<- prometheus.Metric, st *State) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for i := range st.Destinations {
		d := &st.Destinations[i]
		for _, s := range exportedStates {
			gauge(descSockets, float64(d.States[s]), st.View, d.Name, s.String())
		}
		for j, q := range Quantiles {
			gauge(descAge, d.AgeQuantiles[j], st.View, d.Name, quantileLabel(q))
		}
		gauge(descNewConns, d.NewConnsPerS, st.View, d.Name)
		if st.View != ViewClient {
			continue
		}
		gauge(descPortsInUse, float64(d.PortsInUse), st.View, d.Name)
		gauge(descPortsAvailable, float64(d.PortsAvailable), st.View, d.Name)
		gauge(descHold, d.HoldS, st.View, d.Name)
		gauge(descExhaustion, d.ExhaustionRate, st.View, d.Name)
		gauge(descHeadroom, d.Headroom, st.View, d.Name)
	}
	gauge(descPortsInRange, float64(st.PortsInRange))
	gauge(descRangeLow, float64(st.PortRange.Low))
	gauge(descRangeHigh, float64(st.PortRange.High))
	gauge(descReserved, float64(st.ReservedPorts))
	gauge(descBindInUse, float64(st.BindPortsInUse))
	gauge(descBindAvail, float64(max(st.PortsInRange-st.BindPortsInUse, 0)))
	gauge(descListenPorts, float64(st.ListenPorts))
	gauge(descDestinations, float64(st.Seen))
	k := st.Kernel
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, s := range []struct {
		name string
		v    float64
	}{
		{"net.ipv4.tcp_tw_reuse", float64(k.TWReuse)},
		{"net.ipv4.tcp_tw_reuse_delay", float64(k.TWReuseDelay.Milliseconds())},
		{"net.ipv4.tcp_timestamps", b2f(k.Timestamps)},
		{"net.ipv4.tcp_max_tw_buckets", float64(k.MaxTWBuckets)},
	} {
		gauge(descSysctl, s.v, s.name)
	}
	c := &st.Counters
	for _, s := range []struct {
		kind string
		v    int64
	}{{"inuse", c.InUse}, {"orphan", c.Orphan}, {"tw", c.TimeWait}, {"alloc", c.Alloc}} {
		gauge(descSockstat, float64(s.v), s.kind)
	}
	gauge(descCurrEstab, float64(c.CurrEstab))
	for _, cd := range counterDescs {
		ch <- prometheus.MustNewConstMetric(cd.desc, prometheus.CounterValue, float64(cd.get(c)))
	}
	gauge(descInfo, 1, st.Source, st.View)
	gauge(descLastSample, float64(st.Time.UnixNano())/1e9)
}
