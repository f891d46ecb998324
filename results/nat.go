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
