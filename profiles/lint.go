package profiles

import (
	"fmt"
	"strconv"
)

// Verdicts of a lint Finding: what a key does for the client's port budget.
const (
	// VerdictAbsent: the key does not exist on the running kernel.
	VerdictAbsent = "absent"
	// VerdictHelps: the value raises the port budget.
	VerdictHelps = "helps"
	// VerdictRisky: the value lowers the budget or has a risky side effect.
	VerdictRisky = "risky"
	// VerdictNoEffect: the key sounds related but does not change the
	// budget (tcp_fin_timeout does not shorten TIME_WAIT).
	VerdictNoEffect = "no-effect"
	// VerdictIdle: the key acts on idle connections (keepalive), not on
	// the port budget.
	VerdictIdle = "idle"
	// VerdictUnrelated: the key has nothing to do with client ports.
	VerdictUnrelated = "unrelated"
	// VerdictNeutral: the value is the default or changes nothing here.
	VerdictNeutral = "neutral"
	// VerdictUnknown: loadcap does not model the key.
	VerdictUnknown = "unknown"
	// VerdictNAT: the key acts on a translator's connection tracking (a
	// NAT host, a Kubernetes node), not on the client's own ports.
	VerdictNAT = "nat"
)

// Finding is what Lint says about one entry of a sysctl profile.
type Finding struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Line  int    `json:"line,omitempty"`
	// Exists reports whether the key exists on the running kernel.
	Exists bool `json:"exists"`
	// Scope is "per-namespace", "global", "unknown", or "n/a" for a key
	// that does not exist.
	Scope string `json:"scope"`
	// Verdict is one of the Verdict* constants.
	Verdict string `json:"verdict"`
	// Factor is how much the value multiplies the port budget (the
	// exhaustion rate toward a non-loopback target) against the Linux
	// defaults: 60 for tcp_tw_reuse=1, 1 when unchanged, 0 when unknown.
	Factor float64 `json:"factor,omitempty"`
	// Matters marks the key that changes the port budget most.
	Matters bool `json:"matters,omitempty"`
	// Message says in one line what the key does on this kernel.
	Message string `json:"message"`
}

type keyInfo struct {
	// perNetns: the key is per network namespace (verified for the port
	// budget keys by TestNetnsSysctlsPerNamespace).
	perNetns bool
	// removed names the kernel version that removed the key, if any.
	removed string
}

var knownKeys = map[string]keyInfo{
	"net.ipv4.ip_local_port_range":     {perNetns: true},
	"net.ipv4.ip_local_reserved_ports": {perNetns: true},
	"net.ipv4.tcp_tw_reuse":            {perNetns: true},
	"net.ipv4.tcp_tw_reuse_delay":      {perNetns: true},
	"net.ipv4.tcp_timestamps":          {perNetns: true},
	"net.ipv4.tcp_max_tw_buckets":      {perNetns: true},
	"net.ipv4.tcp_fin_timeout":         {perNetns: true},
	"net.ipv4.tcp_keepalive_time":      {perNetns: true},
	"net.ipv4.tcp_keepalive_intvl":     {perNetns: true},
	"net.ipv4.tcp_keepalive_probes":    {perNetns: true},
	"net.ipv4.tcp_syncookies":          {perNetns: true},
	"net.ipv4.ip_forward":              {perNetns: true},
	"net.ipv4.tcp_tw_recycle":          {perNetns: true, removed: "4.12"},
	// Conntrack keys (docs/nat.md, fact n7: per namespace, except the
	// table size).
	"net.netfilter.nf_conntrack_tcp_timeout_time_wait":   {perNetns: true},
	"net.netfilter.nf_conntrack_tcp_timeout_close":       {perNetns: true},
	"net.netfilter.nf_conntrack_tcp_timeout_established": {perNetns: true},
	"net.netfilter.nf_conntrack_tcp_loose":               {perNetns: true},
	"net.netfilter.nf_conntrack_tcp_be_liberal":          {perNetns: true},
	"net.netfilter.nf_conntrack_max":                     {},
	"net.netfilter.nf_conntrack_buckets":                 {},
}

const defaultPorts = 60999 - 32768 + 1

// Lint says, for each entry of s, what it does for a client's port budget on
// the kernel whose sysctls are under procSys ("/proc/sys"), and marks the
// entry that matters most. Keys the profile does not set are read from
// procSys when a prerequisite needs them (tcp_timestamps for tcp_tw_reuse).
func Lint(s *Sysctl, procSys string) []Finding {
	prof := s.Map()
	live, _ := ReadSysctls(procSys, RelevantKeys)
	// value in force after applying the profile: profile, else live, else default.
	eff := func(key, def string) string {
		if v, ok := prof[key]; ok {
			return v
		}
		if v, ok := live[key]; ok {
			return v
		}
		return def
	}
	atoi := func(v string, def int) int {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
		return def
	}
	timestamps := atoi(eff("net.ipv4.tcp_timestamps", "1"), 1) != 0
	reuse := atoi(eff("net.ipv4.tcp_tw_reuse", "2"), 2)
	delayMS := atoi(eff("net.ipv4.tcp_tw_reuse_delay", "1000"), 1000)
	if !SysctlExists(procSys, "net.ipv4.tcp_tw_reuse_delay") {
		delayMS = 1000
	}
	liveMaxTW := atoi(live["net.ipv4.tcp_max_tw_buckets"], 0)

	var out []Finding
	for _, e := range s.Entries {
		f := Finding{Key: e.Key, Value: e.Value, Line: e.Line, Exists: SysctlExists(procSys, e.Key), Scope: "unknown", Verdict: VerdictUnknown}
		ki, known := knownKeys[e.Key]
		if known {
			f.Scope = "global"
			if ki.perNetns {
				f.Scope = "per-namespace"
			}
		}
		now := ""
		if v, ok := live[e.Key]; ok {
			now = fmt.Sprintf(" (now %s)", v)
		}
		n := atoi(e.Value, -1)
		switch e.Key {
		case "net.ipv4.tcp_tw_recycle":
			f.Verdict, f.Factor = VerdictAbsent, 1
			f.Message = "removed in Linux " + ki.removed + " (it broke clients behind NAT); does nothing here and setting it fails"
		case "net.ipv4.tcp_tw_reuse":
			switch {
			case n == 1 && timestamps:
				f.Verdict, f.Factor = VerdictHelps, 60000/float64(delayMS)
				f.Message = fmt.Sprintf("connect() reuses a TIME_WAIT port toward any destination after %d ms instead of 60 s: %.0fx the port budget (not for bind-before-connect)", delayMS, f.Factor)
			case n != 0 && !timestamps:
				f.Verdict, f.Factor = VerdictRisky, 1
				f.Message = "does nothing: tcp_tw_reuse needs tcp_timestamps = 1, which is off"
			case n == 2:
				f.Verdict, f.Factor = VerdictNeutral, 1
				f.Message = "the default: TIME_WAIT reuse toward loopback destinations only"
			default:
				f.Verdict, f.Factor = VerdictRisky, 1
				f.Message = "no TIME_WAIT reuse, not even toward loopback: 60 s per closed port"
			}
			f.Message += now
		case "net.ipv4.tcp_tw_reuse_delay":
			switch {
			case !f.Exists:
				f.Verdict, f.Message = VerdictAbsent, "does not exist on this kernel (recent kernels only; older ones reuse after a fixed 1 s)"
			case reuse == 1 && timestamps:
				f.Verdict, f.Factor = VerdictHelps, 1000/float64(max(n, 1))
				if n >= 1000 {
					f.Verdict = VerdictNeutral
					if n > 1000 {
						f.Verdict = VerdictRisky
					}
				}
				f.Message = fmt.Sprintf("TIME_WAIT ports are reused after %d ms (default 1000)%s", n, now)
			default:
				f.Verdict, f.Factor = VerdictNeutral, 1
				f.Message = "only matters with tcp_tw_reuse = 1 (or 2 toward loopback) and tcp_timestamps = 1" + now
			}
		case "net.ipv4.tcp_timestamps":
			if n == 0 {
				f.Verdict, f.Factor = VerdictRisky, 1
				f.Message = "turns off TCP timestamps, which tcp_tw_reuse needs: no TIME_WAIT reuse (also no PAWS, no RTT sampling)"
			} else {
				f.Verdict, f.Factor = VerdictNeutral, 1
				f.Message = "timestamps on: the prerequisite of tcp_tw_reuse"
			}
		case "net.ipv4.ip_local_port_range":
			lo, hi, _ := ParsePortRange(e.Value)
			ports := (hi - lo + 1) &^ 1
			f.Factor = float64(ports) / defaultPorts
			f.Verdict = VerdictNeutral
			switch {
			case f.Factor > 1.0001:
				f.Verdict = VerdictHelps
			case f.Factor < 0.9999:
				f.Verdict = VerdictRisky
			}
			f.Message = fmt.Sprintf("%d usable ports per destination (default %d): %.2fx the port budget", ports, defaultPorts, f.Factor)
			if (hi-lo+1)%2 == 1 {
				f.Message += "; odd-sized range: the kernel scans an even count, port " + strconv.Itoa(hi) + " is never used"
			}
			if lo < 1024 {
				f.Verdict = VerdictRisky
				f.Message += "; starts below 1024, among well-known service ports"
			} else if lo < 32768 {
				f.Message += "; reserve local listening ports in it with ip_local_reserved_ports"
			}
			f.Message += now
		case "net.ipv4.ip_local_reserved_ports":
			lo, hi, _ := ParsePortRange(eff("net.ipv4.ip_local_port_range", "32768 60999"))
			r, _ := CountReservedPorts(e.Value, lo, hi)
			f.Factor = 1 - float64(r)/float64(max((hi-lo+1)&^1, 1))
			f.Verdict = VerdictNeutral
			if r > 0 {
				f.Verdict = VerdictRisky
			}
			f.Message = fmt.Sprintf("takes %d ports out of the ephemeral range", r)
		case "net.ipv4.tcp_max_tw_buckets":
			f.Factor = 1
			f.Verdict = VerdictNeutral
			f.Message = fmt.Sprintf("at most %d TIME_WAIT sockets in the namespace", n)
			if liveMaxTW > 0 && n < liveMaxTW {
				f.Verdict = VerdictRisky
				f.Message += fmt.Sprintf(", lowered from %d: above it closes skip TIME_WAIT (TCPTimeWaitOverflow), so ports do not run out but late segments of old connections can hit new ones", liveMaxTW)
			}
			if n < defaultPorts {
				f.Verdict = VerdictRisky
				f.Message += fmt.Sprintf("; below the %d ports of the default range, so TIME_WAIT overflows before ports run out", defaultPorts)
			}
		case "net.ipv4.tcp_fin_timeout":
			f.Verdict, f.Factor = VerdictNoEffect, 1
			f.Message = "does not shorten TIME_WAIT (fixed at 60 s, TCP_TIMEWAIT_LEN); it only limits orphaned FIN_WAIT_2 (client closed, server never did)" + now
		case "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes":
			f.Verdict, f.Factor = VerdictIdle, 1
			f.Message = "no effect on the port budget; acts on idle connections of sockets with SO_KEEPALIVE and no per-socket value (firewall idle timeouts)" + now
		case "net.ipv4.tcp_syncookies":
			f.Verdict, f.Factor = VerdictUnrelated, 1
			f.Message = "unrelated to client ports: a server-side SYN-flood defence" + now
		case "net.ipv4.ip_forward":
			f.Verdict, f.Factor = VerdictUnrelated, 1
			f.Message = "unrelated to client ports: turns the host into a router" + now
		case "net.netfilter.nf_conntrack_tcp_timeout_time_wait", "net.netfilter.nf_conntrack_tcp_timeout_close",
			"net.netfilter.nf_conntrack_tcp_timeout_established", "net.netfilter.nf_conntrack_tcp_loose",
			"net.netfilter.nf_conntrack_tcp_be_liberal", "net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_buckets":
			f.Verdict, f.Factor = VerdictNAT, 1
			f.Message = conntrackMessage(e.Key, n)
		default:
			if !f.Exists {
				f.Verdict = VerdictAbsent
				f.Message = "does not exist on this kernel"
			} else {
				f.Message = "exists; not part of loadcap's port budget model"
			}
		}
		if !f.Exists && f.Verdict != VerdictAbsent {
			f.Verdict, f.Factor = VerdictAbsent, 1
			f.Message = "does not exist on this kernel; " + f.Message
		}
		if !f.Exists {
			f.Scope = "n/a"
		}
		if e.IgnoreErrors && !f.Exists {
			f.Message += " (leading '-': sysctl ignores the failure)"
		}
		out = append(out, f)
	}
	best := -1
	for i, f := range out {
		if f.Verdict == VerdictHelps && f.Factor > 1 && (best < 0 || f.Factor > out[best].Factor) {
			best = i
		}
	}
	if best >= 0 {
		out[best].Matters = true
		out[best].Message = fmt.Sprintf("the key that matters for the port budget: %s", out[best].Message)
	}
	return out
}

// MostImportant returns the finding marked Matters, or nil.
func MostImportant(fs []Finding) *Finding {
	for i := range fs {
		if fs[i].Matters {
			return &fs[i]
		}
	}
	return nil
}
