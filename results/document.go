package results

import "time"

// SchemaVersion is the version of the result document layout. Readers refuse
// documents with a newer major version than they know.
const SchemaVersion = 1

// Document is one run's result: what was asked, what the kernel was, what was
// measured per target, what the sampler saw and what the capacity model says.
// JSON field names are stable: docs/result-schema.md describes each one.
type Document struct {
	Schema         int       `json:"schema"`
	ID             string    `json:"id"`
	StartedAt      time.Time `json:"started_at"`
	FinishedAt     time.Time `json:"finished_at"`
	LoadcapVersion string    `json:"loadcap_version"`
	Kernel         string    `json:"kernel"`
	Host           string    `json:"host,omitempty"`
	// Interrupted is true when a signal stopped the run before its end.
	Interrupted bool   `json:"interrupted"`
	Config      Config `json:"config"`
	// Sysctl holds the sysctl values in force for the client, keyed by dotted name.
	Sysctl map[string]string `json:"sysctl"`
	// AchievedRate is the number of writes per second actually started, per target.
	AchievedRate float64    `json:"achieved_rate"`
	Targets      []Target   `json:"targets"`
	Sampler      *Sampler   `json:"sampler,omitempty"`
	Capacity     Capacity   `json:"capacity"`
	Steps        []Step     `json:"steps,omitempty"`
	Notes        []string   `json:"notes,omitempty"`
	Timeline     []Interval `json:"timeline,omitempty"`
	// Shard is set on one shard of a fleet run (loadcap run --shard I/N).
	Shard *Shard `json:"shard,omitempty"`
	// Fleet is set on a document merged from the runs of many hosts
	// (loadcap merge); the per-host figures are kept there side by side.
	Fleet *Fleet `json:"fleet,omitempty"`
	// NAT is set on a NAT lab run (--lab-nat-ports): the translator's
	// conntrack table over time.
	NAT *NAT `json:"nat,omitempty"`
}

// Shard says which part of a fleet run a document measured. The shard paced
// FleetRate/Count writes/s per target (its config.rate) and wrote only
// series Index, Index+Count, Index+2*Count, ...
type Shard struct {
	Index int `json:"index"`
	Count int `json:"count"`
	// FleetRate is the --rate asked of the whole fleet, writes/s per target.
	FleetRate float64 `json:"fleet_rate"`
	// StartAt is the common start time the shard waited for (--start-at).
	StartAt *time.Time `json:"start_at,omitempty"`
}

// Fleet describes a document merged from the runs of many hosts. The
// document's counts, errors and histograms are the fleet's (summed and
// merged exactly); its rates are fleet totals per target; per-host facts
// (ports, TIME_WAIT) are those of the most constrained host, and Derived says
// how each fleet figure was derived.
type Fleet struct {
	// Shards is the shard count of the run (0: unsharded runs merged).
	Shards int `json:"shards"`
	// Hosts are the merged runs, in shard order.
	Hosts []FleetHost `json:"hosts"`
	// StartSpreadMS is the spread of the hosts' start times.
	StartSpreadMS int64 `json:"start_spread_ms"`
	// ExhaustionRatePerHost is the lowest predicted exhaustion rate of any
	// host (writes/s per target from one host); WeakestHost is that host.
	ExhaustionRatePerHost *float64 `json:"exhaustion_rate_per_host"`
	WeakestHost           string   `json:"weakest_host,omitempty"`
	// Forced is true when runs with different configs were merged (--force);
	// Differences names what differed.
	Forced      bool     `json:"forced,omitempty"`
	Differences []string `json:"differences,omitempty"`
	// Derived explains each fleet figure, one line per figure.
	Derived []string `json:"derived"`
}

// FleetHost is one host's run inside a merged fleet document.
type FleetHost struct {
	// Host is the key of this host in sampler.series[].by_host.
	Host         string            `json:"host"`
	Shard        *Shard            `json:"shard,omitempty"`
	ID           string            `json:"id"`
	File         string            `json:"file,omitempty"`
	StartedAt    time.Time         `json:"started_at"`
	FinishedAt   time.Time         `json:"finished_at"`
	Kernel       string            `json:"kernel"`
	Interrupted  bool              `json:"interrupted"`
	AchievedRate float64           `json:"achieved_rate"`
	WritesOK     int64             `json:"writes_ok"`
	WritesFailed int64             `json:"writes_failed"`
	Errors       map[string]int64  `json:"errors,omitempty"`
	PeakTimeWait int               `json:"peak_time_wait"`
	LatencyMS    Latency           `json:"latency_ms"`
	Capacity     Capacity          `json:"capacity"`
	Sysctl       map[string]string `json:"sysctl,omitempty"`
}

// Config is the run configuration as the user asked for it.
type Config struct {
	Targets       []string `json:"targets"`
	Rate          float64  `json:"rate"`
	DurationS     float64  `json:"duration_s"`
	Batch         int      `json:"batch"`
	ClientProfile string   `json:"client_profile"`
	SysctlProfile string   `json:"sysctl_profile"`
	Lab           bool     `json:"lab"`
	FindLimit     bool     `json:"find_limit"`
	DialMode      string   `json:"dial_mode,omitempty"`
	Linger0       bool     `json:"linger0,omitempty"`
	Gzip          bool     `json:"gzip,omitempty"`
	Seed          int64    `json:"seed"`
	Pattern       string   `json:"pattern,omitempty"`
	Workers       int      `json:"workers,omitempty"`
	MaxWorkers    int      `json:"max_workers,omitempty"`
	TimeoutS      float64  `json:"timeout_s,omitempty"`
	Pacer         string   `json:"pacer,omitempty"`
	Series        int      `json:"series,omitempty"`
	Precision     string   `json:"precision,omitempty"`
	// LabFirewallIdleS is the idle timeout of the lab's stateful firewall
	// (--lab-firewall-idle), in seconds: flows idle for longer are dropped
	// silently. Zero (absent in the JSON) when the run had no firewall.
	LabFirewallIdleS float64 `json:"lab_firewall_idle_s,omitempty"`
	// PoolSize is the client profile's bound on the connections open to
	// one target, when it pools connections (0: unbounded, or one
	// connection per write).
	PoolSize int `json:"pool_size,omitempty"`
	// TLSInsecure is true when the server certificates of https targets
	// were not verified (--tls-insecure).
	TLSInsecure bool `json:"tls_insecure,omitempty"`
	// LabNATPorts and LabClients describe a NAT lab run: the translated
	// port range size and the client namespaces behind the router (absent
	// without --lab-nat-ports).
	LabNATPorts int `json:"lab_nat_ports,omitempty"`
	LabClients  int `json:"lab_clients,omitempty"`
}

// Target is what one target saw. Every write goes to every target, so in a
// dual-write run the two targets are directly comparable.
type Target struct {
	Name string `json:"name"`
	// URL has credentials redacted.
	URL            string           `json:"url"`
	Kind           string           `json:"kind"`
	Writes         int64            `json:"writes"`
	WritesOK       int64            `json:"writes_ok"`
	WritesFailed   int64            `json:"writes_failed"`
	LinesOK        int64            `json:"lines_ok"`
	Errors         map[string]int64 `json:"errors"`
	StatusCodes    map[string]int64 `json:"status_codes,omitempty"`
	RetryAfter     map[string]int64 `json:"retry_after,omitempty"`
	LateStarts     int64            `json:"late_starts"`
	AchievedRate   float64          `json:"achieved_rate"`
	LatencyMS      Latency          `json:"latency_ms"`
	ServiceTimeMS  Latency          `json:"service_time_ms"`
	NewConnections int64            `json:"new_connections"`
	PeakTimeWait   int              `json:"peak_time_wait"`
	// StartTimeWait is the TIME_WAIT count toward the target when the run
	// started (left by earlier runs or other clients); OwnPeakTimeWait is
	// the run's own peak: the highest count during the run minus that.
	StartTimeWait   int `json:"start_time_wait"`
	OwnPeakTimeWait int `json:"own_peak_time_wait"`
	// ConnectMS is how long the new connections took to connect (TCP);
	// TLSHandshakeMS how long their TLS handshake took after that. Absent
	// when no connection (or none with TLS) was made.
	ConnectMS      *Latency `json:"connect_ms,omitempty"`
	TLSHandshakeMS *Latency `json:"tls_handshake_ms,omitempty"`
	// Histograms keep the full latency distributions (HdrHistogram V2
	// compressed, base64) so that runs can be merged exactly later.
	Histograms *Histograms `json:"histograms,omitempty"`
	// FirstError is one example message of the most frequent error class.
	FirstError string `json:"first_error,omitempty"`
	// PartialWrites counts writes answered 400/422 "partial write" (some
	// lines rejected); they are failed writes of class http_4xx.
	PartialWrites int64 `json:"partial_writes,omitempty"`
	// DeadConnections counts pooled connections found dead when a write
	// reused them (dropped while idle by the server or a firewall);
	// HeartbeatFailures counts idle connections whose heartbeat failed.
	DeadConnections   int64 `json:"dead_connections"`
	HeartbeatFailures int64 `json:"heartbeat_failures,omitempty"`
	// Health describes the failure episodes of the run, if any.
	Health *Health `json:"health,omitempty"`
}

// Health summarises how writes failed and recovered: the first failure, how
// long it took to detect, and how long the target stayed unhealthy.
type Health struct {
	// FirstFailureMS is when the first failed write was due (ms after
	// start); FirstClass its error class; DetectMS how long that write ran
	// before it failed (time to detect a dead connection).
	FirstFailureMS int64   `json:"first_failure_ms"`
	FirstClass     string  `json:"first_class"`
	DetectMS       float64 `json:"detect_ms"`
	// LastFailureMS is when the last failed write ended; RecoveredMS when
	// the first write after it succeeded (null if none did).
	LastFailureMS int64  `json:"last_failure_ms"`
	RecoveredMS   *int64 `json:"recovered_ms"`
	// UnhealthyS is from the first failure's due time to recovery (or the
	// end of the run).
	UnhealthyS float64 `json:"unhealthy_s"`
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Histograms holds encoded HdrHistograms of one target, values in microseconds.
type Histograms struct {
	Latency     string `json:"latency"`
	ServiceTime string `json:"service_time"`
}

// Sampler is the socket-state time series taken during the run.
type Sampler struct {
	IntervalMS int      `json:"interval_ms"`
	Source     string   `json:"source,omitempty"`
	Series     []Sample `json:"series"`
}

// Sample is one socket-state snapshot.
type Sample struct {
	TMS      int64                     `json:"t_ms"`
	States   map[string]int            `json:"states"`
	ByTarget map[string]map[string]int `json:"by_target,omitempty"`
	// BlockedByTarget counts, per target, the sockets whose port connect()
	// cannot take when tcp_tw_reuse applies: every state but TIME_WAIT, and
	// TIME_WAIT younger than tcp_tw_reuse_delay. Absent when tcp_tw_reuse
	// does not apply (every socket in by_target holds its port then).
	BlockedByTarget map[string]int `json:"blocked_by_target,omitempty"`
	PortsInUse      int            `json:"ports_in_use"`
	PortsAvailable  int            `json:"ports_available,omitempty"`
	NewConnsPerS    float64        `json:"new_conns_per_s,omitempty"`
	SockstatTW      int            `json:"sockstat_tw,omitempty"`
	// Timers counts the established client sockets toward the targets by
	// pending kernel timer: "keepalive" (probing an idle connection),
	// "retransmit" (unacknowledged data: a dead flow), "probe".
	Timers   map[string]int    `json:"timers,omitempty"`
	Counters map[string]uint64 `json:"counters,omitempty"`
	// ByHost is set in a merged fleet document: each host's own sample
	// nearest to this time (its t_ms on the fleet's clock), keyed by
	// fleet.hosts[].host. The fields above are then fleet figures: states,
	// by_target, new_conns_per_s and sockstat_tw summed over the hosts,
	// ports_in_use the highest and ports_available the lowest of any host.
	ByHost map[string]Sample `json:"by_host,omitempty"`
}

// Capacity is the port-budget model applied to this run. Rates are writes/s
// per target. Nil pointers mean "not known" (JSON null).
type Capacity struct {
	PortsAvailable          int      `json:"ports_available"`
	PortRange               string   `json:"port_range,omitempty"`
	TimeWaitHoldS           float64  `json:"time_wait_hold_s"`
	NewConnsPerWrite        float64  `json:"new_conns_per_write"`
	PredictedExhaustionRate *float64 `json:"predicted_exhaustion_rate"`
	MeasuredExhaustionRate  *float64 `json:"measured_exhaustion_rate"`
	MeasuredLow             *float64 `json:"measured_low,omitempty"`
	MeasuredHigh            *float64 `json:"measured_high,omitempty"`
	Headroom                *float64 `json:"headroom"`
	Limit                   string   `json:"limit,omitempty"`
	Explanation             string   `json:"explanation,omitempty"`
	// Loopback is true when every target was on a loopback address, where
	// tcp_tw_reuse=2 (the default) reuses TIME_WAIT ports after about 1 s.
	Loopback bool `json:"loopback,omitempty"`
	// RemoteExhaustionRate is, for a loopback run, the rate at which the
	// same client and sysctls run out toward a remote address, when that
	// differs from the loopback prediction (nil otherwise).
	RemoteExhaustionRate *float64 `json:"remote_exhaustion_rate,omitempty"`
}

// Step is one rate step of a --find-limit run.
type Step struct {
	Rate         float64          `json:"rate"`
	AchievedRate float64          `json:"achieved_rate"`
	DurationS    float64          `json:"duration_s,omitempty"`
	Errors       map[string]int64 `json:"errors"`
	PeakTimeWait int              `json:"peak_time_wait"`
	Phase        string           `json:"phase,omitempty"`
	// NewConnsPerWrite is new connections per successful write in the step.
	NewConnsPerWrite float64 `json:"new_conns_per_write,omitempty"`
	// Dispersion is the variance / mean of the new connections per
	// interval (1: at independent random moments; more: in bursts).
	Dispersion float64 `json:"new_conns_dispersion,omitempty"`
	// SteadyFromS is when, in seconds into the step, its steady state
	// began: one hold time, when the ports the previous step held are free
	// again (steps run back to back). SteadyPortErrors counts the port
	// errors from then on; a step failed when it is not zero.
	SteadyFromS      float64 `json:"steady_from_s,omitempty"`
	SteadyPortErrors int64   `json:"steady_port_errors"`
	// HeldMean, HeldSD and HeldPeak describe the local ports the fullest
	// target's pool held (its sockets in any state, TIME_WAIT included) in
	// the sampler's snapshots of the steady state: what the model's mean
	// (rate x new connections per write x hold) and margin stand for.
	HeldMean float64 `json:"held_ports_mean,omitempty"`
	HeldSD   float64 `json:"held_ports_sd,omitempty"`
	HeldPeak int     `json:"held_ports_peak,omitempty"`
	// Overloaded marks a step whose achieved rate fell below 90 % of its
	// rate: the machine could not run it, and the search took it as a rate
	// the limit is below.
	Overloaded bool `json:"overloaded,omitempty"`
	// Fleet is the step of every client of a NAT lab (--lab-nat-ports with
	// --find-limit); nil otherwise.
	Fleet *StepFleet `json:"fleet,omitempty"`
}

// Interval is one progress interval of one target: counts are deltas over the
// interval that ended at TMS.
type Interval struct {
	TMS     int64  `json:"t_ms"`
	Target  string `json:"target"`
	Started int64  `json:"started"`
	OK      int64  `json:"ok"`
	Failed  int64  `json:"failed"`
	// NewConns is the connections the target's client opened.
	NewConns int64            `json:"new_conns,omitempty"`
	Errors   map[string]int64 `json:"errors,omitempty"`
	P99MS    float64          `json:"p99_ms"`
}
