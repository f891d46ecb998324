package sampler

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ctnetlink message types and attributes
// (linux/netfilter/nfnetlink_conntrack.h).
const (
	nfnlSubsysCTNetlink = 1
	ctMsgNew            = 0 // IPCTNL_MSG_CT_NEW: the type of dumped entries
	ctMsgGet            = 1 // IPCTNL_MSG_CT_GET
	ctMsgGetStatsCPU    = 4 // IPCTNL_MSG_CT_GET_STATS_CPU
	nfgenmsgLen         = 4

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaStatus     = 3
	ctaProtoinfo  = 4
	ctaTimeout    = 7
	ctaID         = 12

	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaIPv4Src    = 1
	ctaIPv4Dst    = 2
	ctaIPv6Src    = 3
	ctaIPv6Dst    = 4
	ctaProtoNum   = 1
	ctaProtoSrc   = 2
	ctaProtoDst   = 3

	ctaProtoinfoTCP      = 1
	ctaProtoinfoTCPState = 1
)

// TCP conntrack states (enum tcp_conntrack), by number.
var ctTCPStates = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
	"CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// CTState names a TCP conntrack state as conntrack(8) prints it.
func CTState(s uint8) string {
	if int(s) < len(ctTCPStates) {
		return ctTCPStates[s]
	}
	return fmt.Sprintf("STATE_%d", s)
}

// CTStateNum is the number of a TCP conntrack state name, false if unknown.
func CTStateNum(name string) (uint8, bool) {
	for i, s := range ctTCPStates {
		if s == name {
			return uint8(i), true
		}
	}
	return 0, false
}

// CTFreesPort reports whether a translated flow in this TCP conntrack
// state gives up its port when the translator runs out: entries in
// TIME_WAIT or CLOSE are evicted by a new flow's SYN (docs/nat.md, n1-n4).
func CTFreesPort(state uint8) bool { return state == 7 || state == 8 }

// CTTuple is one direction of a tracked flow.
type CTTuple struct {
	Proto    uint8
	Src, Dst netip.AddrPort
}

// ConntrackEntry is one entry of the connection tracking table.
type ConntrackEntry struct {
	// ID is the entry's ctnetlink id.
	ID uint32
	// Orig is the tuple as the client sent it; Reply the tuple the answers
	// carry (its Dst is the translated address and port behind a NAT).
	Orig, Reply CTTuple
	// TCPState is the TCP conntrack state (CTState), 0 for other protocols.
	TCPState uint8
	// TimeoutS is the seconds left before the entry expires.
	TimeoutS uint32
	// Status is the entry's status bits (CTA_STATUS: CTStatusAssured ...).
	Status uint32
}

// Conntrack status bits (enum ip_conntrack_status).
const (
	// CTStatusSeenReply: packets were seen in both directions.
	CTStatusSeenReply = 1 << 1
	// CTStatusAssured: the entry is never early-dropped when the table is
	// full (a TCP flow is assured once established).
	CTStatusAssured = 1 << 2
	// CTStatusConfirmed: the entry is in the table. A status given when
	// creating an entry over ctnetlink must include it (the kernel sets it
	// before applying the status, and refuses to change it: EBUSY).
	CTStatusConfirmed = 1 << 3
)

// ParseConntrackMsg decodes the payload of one ctnetlink entry message
// (nfgenmsg, then attributes) into e.
func ParseConntrackMsg(b []byte, e *ConntrackEntry) error {
	if len(b) < nfgenmsgLen {
		return fmt.Errorf("parse conntrack entry: %d bytes, want at least %d", len(b), nfgenmsgLen)
	}
	*e = ConntrackEntry{}
	ad, err := netlink.NewAttributeDecoder(b[nfgenmsgLen:])
	if err != nil {
		return fmt.Errorf("parse conntrack entry: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleOrig:
			ad.Nested(func(nad *netlink.AttributeDecoder) error { return parseTuple(nad, &e.Orig) })
		case ctaTupleReply:
			ad.Nested(func(nad *netlink.AttributeDecoder) error { return parseTuple(nad, &e.Reply) })
		case ctaProtoinfo:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					if nad.Type() == ctaProtoinfoTCP {
						nad.Nested(func(tad *netlink.AttributeDecoder) error {
							for tad.Next() {
								if tad.Type() == ctaProtoinfoTCPState {
									e.TCPState = tad.Uint8()
								}
							}
							return nil
						})
					}
				}
				return nil
			})
		case ctaTimeout:
			e.TimeoutS = ad.Uint32()
		case ctaStatus:
			e.Status = ad.Uint32()
		case ctaID:
			e.ID = ad.Uint32()
		}
	}
	if err := ad.Err(); err != nil {
		return fmt.Errorf("parse conntrack entry: %w", err)
	}
	return nil
}

func parseTuple(ad *netlink.AttributeDecoder, t *CTTuple) error {
	var src, dst netip.Addr
	var sport, dport uint16
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleIP:
			ad.Nested(func(iad *netlink.AttributeDecoder) error {
				for iad.Next() {
					b := iad.Bytes()
					switch {
					case (iad.Type() == ctaIPv4Src || iad.Type() == ctaIPv4Dst) && len(b) == 4:
						a := netip.AddrFrom4([4]byte(b))
						if iad.Type() == ctaIPv4Src {
							src = a
						} else {
							dst = a
						}
					case (iad.Type() == ctaIPv6Src || iad.Type() == ctaIPv6Dst) && len(b) == 16:
						a := netip.AddrFrom16([16]byte(b))
						if iad.Type() == ctaIPv6Src {
							src = a
						} else {
							dst = a
						}
					}
				}
				return nil
			})
		case ctaTupleProto:
			ad.Nested(func(pad *netlink.AttributeDecoder) error {
				for pad.Next() {
					switch pad.Type() {
					case ctaProtoNum:
						t.Proto = pad.Uint8()
					case ctaProtoSrc:
						sport = pad.Uint16()
					case ctaProtoDst:
						dport = pad.Uint16()
					}
				}
				return nil
			})
		}
	}
	t.Src, t.Dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	return nil
}

// MarshalConntrackMsg encodes e as the payload of a ctnetlink entry
// message, the inverse of ParseConntrackMsg; it builds synthetic kernel
// replies for tests, and IPCTNL_MSG_CT_NEW requests that fill a table (the
// lab's full-table facts).
func MarshalConntrackMsg(e *ConntrackEntry) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	tuple := func(t CTTuple) func(*netlink.AttributeEncoder) error {
		return func(nae *netlink.AttributeEncoder) error {
			nae.Nested(ctaTupleIP, func(iae *netlink.AttributeEncoder) error {
				if t.Src.Addr().Is4() {
					s, d := t.Src.Addr().As4(), t.Dst.Addr().As4()
					iae.Bytes(ctaIPv4Src, s[:])
					iae.Bytes(ctaIPv4Dst, d[:])
				} else {
					s, d := t.Src.Addr().As16(), t.Dst.Addr().As16()
					iae.Bytes(ctaIPv6Src, s[:])
					iae.Bytes(ctaIPv6Dst, d[:])
				}
				return nil
			})
			nae.Nested(ctaTupleProto, func(pae *netlink.AttributeEncoder) error {
				pae.Uint8(ctaProtoNum, t.Proto)
				pae.Uint16(ctaProtoSrc, t.Src.Port())
				pae.Uint16(ctaProtoDst, t.Dst.Port())
				return nil
			})
			return nil
		}
	}
	ae.Nested(ctaTupleOrig, tuple(e.Orig))
	ae.Nested(ctaTupleReply, tuple(e.Reply))
	if e.Orig.Proto == unix.IPPROTO_TCP {
		ae.Nested(ctaProtoinfo, func(pae *netlink.AttributeEncoder) error {
			pae.Nested(ctaProtoinfoTCP, func(tae *netlink.AttributeEncoder) error {
				tae.Uint8(ctaProtoinfoTCPState, e.TCPState)
				return nil
			})
			return nil
		})
	}
	ae.Uint32(ctaTimeout, e.TimeoutS)
	if e.Status != 0 {
		ae.Uint32(ctaStatus, e.Status)
	}
	ae.Uint32(ctaID, e.ID)
	attrs, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("marshal conntrack entry: %w", err)
	}
	fam := byte(unix.AF_INET)
	if !e.Orig.Src.Addr().Is4() {
		fam = unix.AF_INET6
	}
	return append([]byte{fam, 0, 0, 0}, attrs...), nil
}

// ConntrackStats are the counters of `conntrack -S`, summed over the CPUs.
type ConntrackStats struct {
	Found         uint64 `json:"found"`
	Invalid       uint64 `json:"invalid"`
	Insert        uint64 `json:"insert"`
	InsertFailed  uint64 `json:"insert_failed"`
	Drop          uint64 `json:"drop"`
	EarlyDrop     uint64 `json:"early_drop"`
	Error         uint64 `json:"error"`
	SearchRestart uint64 `json:"search_restart"`
	ClashResolve  uint64 `json:"clash_resolve"`
	ChainTooLong  uint64 `json:"chaintoolong"`
}

// field maps a CTA_STATS_* attribute number to its counter, nil if none.
func (s *ConntrackStats) field(typ uint16) *uint64 {
	switch typ {
	case 2:
		return &s.Found
	case 4:
		return &s.Invalid
	case 8:
		return &s.Insert
	case 9:
		return &s.InsertFailed
	case 10:
		return &s.Drop
	case 11:
		return &s.EarlyDrop
	case 12:
		return &s.Error
	case 13:
		return &s.SearchRestart
	case 14:
		return &s.ClashResolve
	case 15:
		return &s.ChainTooLong
	}
	return nil
}

// AddConntrackStatsCPU adds the counters of one CPU's stats message
// (payload: nfgenmsg, then CTA_STATS_* attributes) to s.
func AddConntrackStatsCPU(b []byte, s *ConntrackStats) error {
	if len(b) < nfgenmsgLen {
		return fmt.Errorf("parse conntrack stats: %d bytes", len(b))
	}
	ad, err := netlink.NewAttributeDecoder(b[nfgenmsgLen:])
	if err != nil {
		return fmt.Errorf("parse conntrack stats: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if p := s.field(ad.Type()); p != nil {
			*p += uint64(ad.Uint32())
		}
	}
	if err := ad.Err(); err != nil {
		return fmt.Errorf("parse conntrack stats: %w", err)
	}
	return nil
}

// MarshalConntrackStatsCPU encodes one CPU's counters as a stats message
// payload, the inverse of AddConntrackStatsCPU (for tests).
func MarshalConntrackStatsCPU(cpu uint16, s ConntrackStats) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	for typ := uint16(1); typ <= 15; typ++ {
		if p := s.field(typ); p != nil {
			ae.Uint32(typ, uint32(*p))
		}
	}
	attrs, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	return append([]byte{unix.AF_UNSPEC, 0, byte(cpu >> 8), byte(cpu)}, attrs...), nil
}

// Conntrack reads one network namespace's connection tracking table over
// ctnetlink. Its netlink socket is opened inside the namespace once.
type Conntrack struct {
	conn *netlink.Conn
	// count and max are nf_conntrack_count and nf_conntrack_max, opened
	// inside the namespace. (The IPCTNL_MSG_CT_GET_STATS reply carries
	// NLM_F_MULTI without a closing NLMSG_DONE, which netlink.Conn would
	// wait for.)
	count, max *os.File
}

// OpenConntrack opens a ctnetlink socket in the network namespace netns (a
// name under NetNSDir or a path; "" for the process's own). Reading the
// table needs CAP_NET_ADMIN.
func OpenConntrack(netns string) (*Conntrack, error) {
	var conn *netlink.Conn
	var count, max *os.File
	dial := func() error {
		var err error
		if count, err = os.Open("/proc/sys/net/netfilter/nf_conntrack_count"); err != nil {
			return fmt.Errorf("is nf_conntrack loaded? %w", err)
		}
		if max, err = os.Open("/proc/sys/net/netfilter/nf_conntrack_max"); err != nil {
			count.Close()
			return err
		}
		conn, err = netlink.Dial(unix.NETLINK_NETFILTER, nil)
		if err != nil {
			count.Close()
			max.Close()
			return fmt.Errorf("dial ctnetlink: %w", err)
		}
		return nil
	}
	var err error
	if netns != "" {
		var fd int
		if fd, err = openNetNS(netns); err != nil {
			return nil, fmt.Errorf("open conntrack: %w", err)
		}
		err = inNetNS(fd, dial)
		unix.Close(fd)
	} else {
		err = dial()
	}
	if err != nil {
		return nil, fmt.Errorf("open conntrack: %w", err)
	}
	return &Conntrack{conn: conn, count: count, max: max}, nil
}

// Close closes the netlink socket and the files.
func (c *Conntrack) Close() error {
	c.count.Close()
	c.max.Close()
	return c.conn.Close()
}

// readInt re-reads an open sysctl file.
func readInt(f *os.File) (int, error) {
	var b [32]byte
	n, err := f.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return v, nil
}

func ctType(msg int) netlink.HeaderType { return netlink.HeaderType(nfnlSubsysCTNetlink<<8 | msg) }

// Dump calls fn for every entry of the table (both families).
func (c *Conntrack) Dump(fn func(*ConntrackEntry)) error {
	msgs, err := c.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: ctType(ctMsgGet), Flags: netlink.Request | netlink.Dump},
		Data:   []byte{unix.AF_UNSPEC, 0, 0, 0},
	})
	if err != nil {
		return fmt.Errorf("dump conntrack: %w", err)
	}
	var e ConntrackEntry
	for _, m := range msgs {
		if m.Header.Type != ctType(ctMsgNew) {
			continue
		}
		if err := ParseConntrackMsg(m.Data, &e); err != nil {
			return err
		}
		fn(&e)
	}
	return nil
}

// Stats returns the counters of every CPU summed, the entries in the
// table (nf_conntrack_count) and nf_conntrack_max.
func (c *Conntrack) Stats() (s ConntrackStats, count, max int, err error) {
	msgs, err := c.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: ctType(ctMsgGetStatsCPU), Flags: netlink.Request | netlink.Dump},
		Data:   []byte{unix.AF_UNSPEC, 0, 0, 0},
	})
	if err != nil {
		return s, 0, 0, fmt.Errorf("read conntrack stats: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Type != ctType(ctMsgGetStatsCPU) {
			continue
		}
		if err := AddConntrackStatsCPU(m.Data, &s); err != nil {
			return s, 0, 0, err
		}
	}
	if count, err = readInt(c.count); err != nil {
		return s, 0, 0, fmt.Errorf("read conntrack count: %w", err)
	}
	if max, err = readInt(c.max); err != nil {
		return s, 0, 0, fmt.Errorf("read conntrack max: %w", err)
	}
	return s, count, max, nil
}

// CTKey is what a translator's port budget is per: the translated address
// (the reply tuple's destination) and the destination ip:port, by protocol.
type CTKey struct {
	Proto      uint8          `json:"proto"`
	Translated netip.Addr     `json:"translated"`
	Dst        netip.AddrPort `json:"dst"`
}

// CTGroup counts the entries of one CTKey.
type CTGroup struct {
	CTKey
	// States counts the TCP entries by conntrack state; other protocols
	// count under "-".
	States map[string]int `json:"states"`
	// Held is the entries that hold their translated port (not TIME_WAIT
	// or CLOSE, which a new flow evicts).
	Held int `json:"held"`
	// Total is every entry of the group.
	Total int `json:"total"`
}

// ConntrackSnapshot is one reading of the table.
type ConntrackSnapshot struct {
	// Groups, largest first.
	Groups []CTGroup `json:"groups"`
	// Entries is the number of entries dumped.
	Entries int `json:"entries"`
	// Count and Max are nf_conntrack_count and nf_conntrack_max.
	Count int `json:"nf_conntrack_count"`
	Max   int `json:"nf_conntrack_max"`
	// Stats are the conntrack -S counters summed over the CPUs.
	Stats ConntrackStats `json:"stats"`
	// ids are the entry ids seen, to count new flows between snapshots.
	ids map[uint32]bool
}

// GroupConntrack counts entries per CTKey and state; it is the pure part of
// Snapshot.
func GroupConntrack(entries []ConntrackEntry) []CTGroup {
	m := map[CTKey]*CTGroup{}
	for _, e := range entries {
		k := CTKey{Proto: e.Orig.Proto, Translated: e.Reply.Dst.Addr(), Dst: e.Orig.Dst}
		g := m[k]
		if g == nil {
			g = &CTGroup{CTKey: k, States: map[string]int{}}
			m[k] = g
		}
		st := "-"
		if e.Orig.Proto == unix.IPPROTO_TCP {
			st = CTState(e.TCPState)
		}
		g.States[st]++
		g.Total++
		if e.Orig.Proto != unix.IPPROTO_TCP || !CTFreesPort(e.TCPState) {
			g.Held++
		}
	}
	out := make([]CTGroup, 0, len(m))
	for _, g := range m {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Total != out[j].Total {
			return out[i].Total > out[j].Total
		}
		return out[i].Dst.String()+out[i].Translated.String() < out[j].Dst.String()+out[j].Translated.String()
	})
	return out
}

// Snapshot dumps the table and reads the counters.
func (c *Conntrack) Snapshot() (*ConntrackSnapshot, error) {
	var entries []ConntrackEntry
	snap := &ConntrackSnapshot{ids: map[uint32]bool{}}
	if err := c.Dump(func(e *ConntrackEntry) {
		entries = append(entries, *e)
		snap.ids[e.ID] = true
	}); err != nil {
		return nil, err
	}
	var err error
	if snap.Stats, snap.Count, snap.Max, err = c.Stats(); err != nil {
		return nil, err
	}
	snap.Entries = len(entries)
	snap.Groups = GroupConntrack(entries)
	return snap, nil
}

// NewSince is how many entries of s were not in prev (new flows, at least:
// a flow that started and ended between the two is not seen).
func (s *ConntrackSnapshot) NewSince(prev *ConntrackSnapshot) int {
	n := 0
	for id := range s.ids {
		if !prev.ids[id] {
			n++
		}
	}
	return n
}

// CTProjection is what the observed new-flow rate means for a translator.
type CTProjection struct {
	// FlowRate is the observed new flows per second (all destinations).
	FlowRate float64 `json:"flow_rate"`
	// Ports is the translated ports per (translated address, destination).
	Ports int `json:"translated_ports"`
	// BusiestHeld is the most entries holding a port in one group.
	BusiestHeld int `json:"busiest_held"`
	// PortRate is the new-flow rate at which the busiest group's held
	// ports reach Ports, at the same mix (held grows with the rate, by
	// Little's law); +Inf when nothing is held.
	PortRate float64 `json:"port_exhaustion_flow_rate"`
	// TableRate is the new-flow rate at which the table reaches
	// nf_conntrack_max, at the same mix; +Inf when unknown.
	TableRate float64 `json:"table_exhaustion_flow_rate"`
	// Text says it in one sentence.
	Text string `json:"text"`
}

// ProjectConntrack projects a snapshot and an observed new-flow rate onto
// a translator with ports translated ports per destination. Entries in
// TIME_WAIT or CLOSE do not count against the ports (this kernel evicts
// them, docs/nat.md n1) but do against nf_conntrack_max.
func ProjectConntrack(s *ConntrackSnapshot, flowRate float64, ports int) CTProjection {
	p := CTProjection{FlowRate: flowRate, Ports: ports, PortRate: math.Inf(1), TableRate: math.Inf(1)}
	var busiest *CTGroup
	for i := range s.Groups {
		if g := &s.Groups[i]; busiest == nil || g.Held > busiest.Held {
			busiest = g
		}
	}
	if busiest != nil {
		p.BusiestHeld = busiest.Held
	}
	if flowRate > 0 && p.BusiestHeld > 0 && ports > 0 {
		p.PortRate = flowRate * float64(ports) / float64(p.BusiestHeld)
	}
	if flowRate > 0 && s.Count > 0 && s.Max > 0 {
		p.TableRate = flowRate * float64(s.Max) / float64(s.Count)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%.1f new flows/s; ", flowRate)
	if busiest != nil {
		fmt.Fprintf(&b, "busiest destination %s via %s holds %d of %d translated ports (open or closing flows; TIME_WAIT and CLOSE entries are evicted)", busiest.Dst, busiest.Translated, busiest.Held, ports)
	} else {
		b.WriteString("no entries")
	}
	fmt.Fprintf(&b, "; table %d of nf_conntrack_max %d", s.Count, s.Max)
	switch {
	case math.IsInf(p.PortRate, 1) && math.IsInf(p.TableRate, 1):
		b.WriteString("; nothing to project from")
	case p.PortRate <= p.TableRate:
		fmt.Fprintf(&b, "; at this mix the translated ports run out first, at %.1f new flows/s (SYNs dropped: insert_failed, drop)", p.PortRate)
	default:
		fmt.Fprintf(&b, "; at this mix the table fills first, at %.1f new flows/s (new flows dropped)", p.TableRate)
	}
	p.Text = b.String()
	return p
}
