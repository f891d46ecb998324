package results

// NAT is what the translator of a NAT lab run (--lab-nat-ports) saw: its
// configuration and its connection tracking table over time.
type NAT struct {
	// Ports is the translated port range size; PortLow its first port.
	Ports   int `json:"translated_ports"`
	PortLow int `json:"translated_port_low"`
	// Clients is the number of client namespaces behind the router.
	Clients int `json:"clients"`
	// RouterSysctls are the values written in the router namespace.
	RouterSysctls map[string]string `json:"router_sysctls,omitempty"`
	// Samples are the router's conntrack table and counters, one per
	// second of the run.
	Samples []NATSample `json:"samples,omitempty"`
	// Peak is the largest of each figure over Samples; Drops the counter
	// increases over the run.
	PeakHeld     int    `json:"peak_held"`
	PeakEntries  int    `json:"peak_entries"`
	InsertFailed uint64 `json:"insert_failed"`
	Drop         uint64 `json:"drop"`
	EarlyDrop    uint64 `json:"early_drop"`
	ClashResolve uint64 `json:"clash_resolve"`
	// FindLimit is the model against the measurement of a --find-limit
	// run through the NAT lab; nil for a run at fixed rates.
	FindLimit *NATFindLimit `json:"find_limit,omitempty"`
}

// NATFindLimit compares, for a --find-limit run through the NAT lab, the
// model's stages (capacity.PredictNAT) with the fleet's measured
// exhaustion rate. Rates are writes/s per client per target; nil when the
// stage never runs out from the write rate.
type NATFindLimit struct {
	// HostRate is the clients' own ports' (the find-limit's own
	// prediction, with the connections per write it measured); NATRate
	// the translated ports'; ConntrackRate the conntrack table's.
	HostRate      *float64 `json:"host_rate,omitempty"`
	NATRate       *float64 `json:"nat_rate,omitempty"`
	ConntrackRate *float64 `json:"conntrack_rate,omitempty"`
	// PredictedRate is the lowest of the three, PredictedStage its stage
	// (host, nat, conntrack; "" when none runs out) and PredictedFailure
	// what the clients then see (port-error, connect-timeout).
	PredictedRate    *float64 `json:"predicted_rate,omitempty"`
	PredictedStage   string   `json:"predicted_stage,omitempty"`
	PredictedFailure string   `json:"predicted_failure,omitempty"`
	// MeasuredRate is the fleet's measured exhaustion rate (nil: none
	// found) and MeasuredFailure the failure the first failing step above
	// it saw in any client: port-error (EADDRNOTAVAIL, EADDRINUSE),
	// connect-timeout (ETIMEDOUT), or both joined by "+".
	MeasuredRate    *float64 `json:"measured_rate,omitempty"`
	MeasuredFailure string   `json:"measured_failure,omitempty"`
	// Explanation is the model's sentence.
	Explanation string `json:"explanation,omitempty"`
}

// StepFleet is a --find-limit step run by every client of a NAT lab at
// once, each at the step's rate. The step records the worst client's
// document (the most port errors and connect timeouts, then the lowest
// achieved rate); the step failed when any client failed in its steady
// state.
type StepFleet struct {
	// Clients is how many clients ran the step; Worst the index of the one
	// recorded; Failed how many saw port errors or connect timeouts in the
	// step, SteadyFailed how many from its steady state on (the step failed
	// when that is not zero; not set for the burst).
	Clients      int `json:"clients"`
	Worst        int `json:"worst_client"`
	Failed       int `json:"failed_clients"`
	SteadyFailed int `json:"steady_failed_clients"`
	// Errors sums every client's errors by class.
	Errors map[string]int64 `json:"errors"`
	// RouterDrop and RouterInsertFailed are the router's conntrack -S
	// counters' increase over the step.
	RouterDrop         uint64 `json:"router_drop"`
	RouterInsertFailed uint64 `json:"router_insert_failed"`
}

// NATSample is one reading of the router's conntrack table.
type NATSample struct {
	// T is seconds since the run started.
	T float64 `json:"t"`
	// Entries is nf_conntrack_count; Max nf_conntrack_max.
	Entries int `json:"entries"`
	Max     int `json:"max"`
	// Held is the busiest (translated address, destination)'s entries that
	// hold their translated port (not TIME_WAIT or CLOSE); TimeWait and
	// Close count its entries in those states.
	Held     int `json:"held"`
	TimeWait int `json:"time_wait"`
	Close    int `json:"close"`
	// The conntrack -S counters since the run started.
	InsertFailed uint64 `json:"insert_failed"`
	Drop         uint64 `json:"drop"`
	EarlyDrop    uint64 `json:"early_drop"`
	ClashResolve uint64 `json:"clash_resolve"`
}
