package sampler

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ParseSockstat parses /proc/net/sockstat ("TCP: inuse 1 orphan 0 tw 5 ...")
// into protocol -> field -> value.
func ParseSockstat(r io.Reader) (map[string]map[string]int64, error) {
	out := make(map[string]map[string]int64)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		proto, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("parse sockstat %s: odd number of fields", proto)
		}
		m := make(map[string]int64, len(f)/2)
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parse sockstat %s %s: %w", proto, f[i], err)
			}
			m[f[i]] = v
		}
		out[proto] = m
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read sockstat: %w", err)
	}
	return out, nil
}

// ParseProtoStats parses /proc/net/snmp or /proc/net/netstat: pairs of lines,
// a header "Tcp: ActiveOpens PassiveOpens ..." followed by a value line
// "Tcp: 21 2 ...", into protocol -> field -> value.
func ParseProtoStats(r io.Reader) (map[string]map[string]int64, error) {
	out := make(map[string]map[string]int64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 16<<10), 1<<20)
	for sc.Scan() {
		header := sc.Text()
		if strings.TrimSpace(header) == "" {
			continue
		}
		if !sc.Scan() {
			return nil, fmt.Errorf("parse proto stats: header %.20q has no value line", header)
		}
		values := sc.Text()
		hp, hrest, ok1 := strings.Cut(header, ":")
		vp, vrest, ok2 := strings.Cut(values, ":")
		if !ok1 || !ok2 || hp != vp {
			return nil, fmt.Errorf("parse proto stats: mismatched lines %.20q and %.20q", header, values)
		}
		names, vals := strings.Fields(hrest), strings.Fields(vrest)
		if len(names) != len(vals) {
			return nil, fmt.Errorf("parse proto stats %s: %d names, %d values", hp, len(names), len(vals))
		}
		m := make(map[string]int64, len(names))
		for i, n := range names {
			v, err := strconv.ParseInt(vals[i], 10, 64)
			if err != nil {
				// Some counters are unsigned 64-bit.
				u, uerr := strconv.ParseUint(vals[i], 10, 64)
				if uerr != nil {
					return nil, fmt.Errorf("parse proto stats %s %s: %w", hp, n, err)
				}
				v = int64(u)
			}
			m[n] = v
		}
		out[hp] = m
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read proto stats: %w", err)
	}
	return out, nil
}

// Counters are the kernel TCP counters of one network namespace. Counters
// from snmp and netstat are cumulative since the namespace was created.
type Counters struct {
	// From /proc/net/sockstat, line TCP. InUse and TimeWait are per
	// namespace; Orphan and Alloc are host-wide.
	InUse, Orphan, TimeWait, Alloc int64
	// From /proc/net/snmp, Tcp.
	ActiveOpens, PassiveOpens, AttemptFails, EstabResets, CurrEstab uint64
	// From /proc/net/netstat, TcpExt.
	TW, TWRecycled, TWKilled, TCPTimeWaitOverflow, TCPAbortOnTimeout, TCPAbortOnClose uint64
}

// CountersFrom picks the Counters out of parsed sockstat, snmp and netstat
// files (ParseSockstat, ParseProtoStats). Missing fields stay zero.
func CountersFrom(sockstat, snmp, netstat map[string]map[string]int64) Counters {
	u := func(m map[string]int64, k string) uint64 {
		if v := m[k]; v > 0 {
			return uint64(v)
		}
		return 0
	}
	ss, tcp, ext := sockstat["TCP"], snmp["Tcp"], netstat["TcpExt"]
	return Counters{
		InUse: ss["inuse"], Orphan: ss["orphan"], TimeWait: ss["tw"], Alloc: ss["alloc"],
		ActiveOpens:         u(tcp, "ActiveOpens"),
		PassiveOpens:        u(tcp, "PassiveOpens"),
		AttemptFails:        u(tcp, "AttemptFails"),
		EstabResets:         u(tcp, "EstabResets"),
		CurrEstab:           u(tcp, "CurrEstab"),
		TW:                  u(ext, "TW"),
		TWRecycled:          u(ext, "TWRecycled"),
		TWKilled:            u(ext, "TWKilled"),
		TCPTimeWaitOverflow: u(ext, "TCPTimeWaitOverflow"),
		TCPAbortOnTimeout:   u(ext, "TCPAbortOnTimeout"),
		TCPAbortOnClose:     u(ext, "TCPAbortOnClose"),
	}
}

// Map returns the counters keyed "sockstat.tw", "Tcp.ActiveOpens",
// "TcpExt.TWKilled", ..., as stored in a result document's sample.
func (c Counters) Map() map[string]uint64 {
	nn := func(v int64) uint64 { return uint64(max(v, 0)) }
	return map[string]uint64{
		"sockstat.inuse":             nn(c.InUse),
		"sockstat.orphan":            nn(c.Orphan),
		"sockstat.tw":                nn(c.TimeWait),
		"sockstat.alloc":             nn(c.Alloc),
		"Tcp.ActiveOpens":            c.ActiveOpens,
		"Tcp.PassiveOpens":           c.PassiveOpens,
		"Tcp.AttemptFails":           c.AttemptFails,
		"Tcp.EstabResets":            c.EstabResets,
		"Tcp.CurrEstab":              c.CurrEstab,
		"TcpExt.TW":                  c.TW,
		"TcpExt.TWRecycled":          c.TWRecycled,
		"TcpExt.TWKilled":            c.TWKilled,
		"TcpExt.TCPTimeWaitOverflow": c.TCPTimeWaitOverflow,
		"TcpExt.TCPAbortOnTimeout":   c.TCPAbortOnTimeout,
		"TcpExt.TCPAbortOnClose":     c.TCPAbortOnClose,
	}
}

// bytesReader wraps b for the io.Reader parse functions without copying.
func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
