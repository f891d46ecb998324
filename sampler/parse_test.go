package sampler

import (
	"encoding/binary"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// The fixtures were captured in a namespace holding a listener on
// 127.0.0.1:8086 and one on [::]:8087 (dual stack), 3 TIME_WAIT sockets
// toward 127.0.0.1:8086, 2 toward [::1]:8087, 2 ESTABLISHED pairs on
// 127.0.0.1:8086, one IPv4-mapped pair from an AF_INET6 client and one pair
// from an AF_INET client on 8087.
func fixtureSockets(t *testing.T) []Socket {
	t.Helper()
	var out []Socket
	for _, name := range []string{"testdata/proc_net_tcp", "testdata/proc_net_tcp6"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := ParseProcNetTCP(b, func(s *Socket) { out = append(out, *s) }); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return out
}

func TestParseProcNetTCP(t *testing.T) {
	socks := fixtureSockets(t)
	if len(socks) != 15 {
		t.Fatalf("parsed %d sockets, want 15", len(socks))
	}
	want := []Socket{
		{State: Listen, Local: netip.MustParseAddrPort("127.0.0.1:8086"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), Inode: 36111},
		{State: TimeWait, Local: netip.MustParseAddrPort("127.0.0.1:40156"), Remote: netip.MustParseAddrPort("127.0.0.1:8086"), Expires: 59990 * time.Millisecond, Timer: TimerTimeWait},
	}
	if socks[0] != want[0] {
		t.Errorf("line 0: got %+v, want %+v", socks[0], want[0])
	}
	if socks[4] != want[1] {
		t.Errorf("line 4: got %+v, want %+v", socks[4], want[1])
	}
	v6 := socks[9+1] // tcp6 line 1: the server side of the IPv4-mapped pair
	if v6.Local != netip.MustParseAddrPort("[::ffff:127.0.0.1]:8087") || v6.Remote != netip.MustParseAddrPort("[::ffff:127.0.0.1]:59692") || v6.State != Established {
		t.Errorf("tcp6 line 1: got %+v", v6)
	}
	tw6 := socks[9+3]
	if tw6.Local != netip.MustParseAddrPort("[::1]:56450") || tw6.Remote != netip.MustParseAddrPort("[::1]:8087") || tw6.State != TimeWait {
		t.Errorf("tcp6 line 3: got %+v", tw6)
	}
}

func TestParseProcNetTCPErrors(t *testing.T) {
	header := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	for name, line := range map[string]string{
		"short":   "   0: 0100007F:1F96 00000000:0000 0A",
		"state":   "   0: 0100007F:1F96 00000000:0000 ZZ 00000000:00000000 00:00000000 00000000     0        0 1 1",
		"address": "   0: 0100007G:1F96 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1",
		"port":    "   0: 0100007F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1",
		"timer":   "   0: 0100007F:1F96 00000000:0000 0A 00000000:00000000 0000000000 00000000     0        0 1 1",
	} {
		if err := ParseProcNetTCP([]byte(header+line+"\n"), func(*Socket) {}); err == nil {
			t.Errorf("%s: no error for %q", name, line)
		}
	}
	// Blank lines and a missing trailing newline are fine.
	n := 0
	err := ParseProcNetTCP([]byte(header+"\n   0: 0100007F:1F96 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1"), func(*Socket) { n++ })
	if err != nil || n != 1 {
		t.Errorf("got %d sockets, %v", n, err)
	}
}

// fixtureQuery matches destination port 8087 on any address and
// 127.0.0.1:8086 exactly.
var fixtureQuery = Query{Matches: []Match{
	{Name: "any:8087", Dst: netip.AddrPortFrom(netip.Addr{}, 8087)},
	{Name: "v4:8086", Dst: netip.MustParseAddrPort("127.0.0.1:8086")},
}}

func checkFixtureSnapshot(t *testing.T, snap *Snapshot) {
	t.Helper()
	all := StateCounts{Listen: 2, Established: 8, TimeWait: 5}
	if snap.All != all {
		t.Errorf("all: got %v, want %v", snap.All.Map(), all.Map())
	}
	if got, want := *snap.ByMatch["v4:8086"], (StateCounts{Established: 2, TimeWait: 3}); got != want {
		t.Errorf("v4:8086: got %v, want %v", got.Map(), want.Map())
	}
	if got, want := *snap.ByMatch["any:8087"], (StateCounts{Established: 2, TimeWait: 2}); got != want {
		t.Errorf("any:8087: got %v, want %v", got.Map(), want.Map())
	}
	v4 := netip.MustParseAddrPort("127.0.0.1:8087")
	v6 := netip.MustParseAddrPort("[::1]:8087")
	if c := snap.ByDestination[v4]; c == nil || *c != (StateCounts{Established: 2}) {
		t.Errorf("by destination %v: %v", v4, c)
	}
	if c := snap.ByDestination[v6]; c == nil || *c != (StateCounts{TimeWait: 2}) {
		t.Errorf("by destination %v: %v", v6, c)
	}
	if len(snap.ByDestination) != 3 {
		t.Errorf("by destination has %d keys, want 3", len(snap.ByDestination))
	}
	if snap.PortsInUse != 9 {
		t.Errorf("ports in use %d, want 9", snap.PortsInUse)
	}
	if snap.PortsInUseByDestination[v4] != 2 || snap.PortsInUseByDestination[v6] != 2 ||
		snap.PortsInUseByDestination[netip.MustParseAddrPort("127.0.0.1:8086")] != 5 {
		t.Errorf("ports in use by destination %v", snap.PortsInUseByDestination)
	}
	if snap.TimeWait[11] != 5 || snap.TimeWait.Count() != 5 {
		t.Errorf("time-wait histogram %v, want 5 in the 55-60 s bucket", snap.TimeWait)
	}
	// Per destination: 3 toward 127.0.0.1:8086, 2 toward [::1]:8087, none
	// (no histogram) toward 127.0.0.1:8087.
	if h := snap.TimeWaitByDestination[netip.MustParseAddrPort("127.0.0.1:8086")]; h == nil || h[11] != 3 || h.Count() != 3 {
		t.Errorf("time-wait histogram of 127.0.0.1:8086: %v, want 3 in the 55-60 s bucket", h)
	}
	if h := snap.TimeWaitByDestination[v6]; h == nil || h.Count() != 2 {
		t.Errorf("time-wait histogram of %v: %v, want 2", v6, h)
	}
	if h, ok := snap.TimeWaitByDestination[v4]; ok || len(snap.TimeWaitByDestination) != 2 {
		t.Errorf("time-wait histograms %v (%v for %v): want only the two destinations with TIME_WAIT", snap.TimeWaitByDestination, h, v4)
	}
}

func TestTallyFixture(t *testing.T) {
	tl := newTally(fixtureQuery, PortRange{32768, 60999}, SourceProc)
	for _, s := range fixtureSockets(t) {
		tl.add(&s)
	}
	checkFixtureSnapshot(t, tl.finish())
}

func TestTallyStateFilterAndLocalView(t *testing.T) {
	socks := fixtureSockets(t)
	tl := newTally(Query{States: StatesOf(TimeWait), Matches: []Match{{Name: "srv", LocalPort: 8086}}}, PortRange{32768, 60999}, SourceProc)
	for _, s := range socks {
		tl.add(&s)
	}
	snap := tl.finish()
	if snap.All != (StateCounts{TimeWait: 5}) {
		t.Errorf("all: %v", snap.All.Map())
	}
	// No TIME_WAIT on the server side in the fixture.
	if snap.Matched.Total() != 0 {
		t.Errorf("matched: %v", snap.Matched.Map())
	}

	tl = newTally(Query{Matches: []Match{{Name: "srv", LocalPort: 8086}}}, PortRange{32768, 60999}, SourceProc)
	for _, s := range socks {
		tl.add(&s)
	}
	snap = tl.finish()
	local := netip.MustParseAddrPort("127.0.0.1:8086")
	if c := snap.ByDestination[local]; c == nil || *c != (StateCounts{Listen: 1, Established: 2}) || len(snap.ByDestination) != 1 {
		t.Errorf("server view by local address: %v", snap.ByDestination)
	}
}

func TestPortSetCount(t *testing.T) {
	var p, q portSet
	for _, port := range []uint16{0, 63, 64, 1000, 32767, 32768, 60999, 61000, 65535} {
		p.add(port)
	}
	q.add(1000)
	q.add(1001)
	for _, c := range []struct {
		lo, hi uint16
		q      *portSet
		want   int
	}{
		{0, 65535, nil, 9}, {32768, 60999, nil, 2}, {63, 64, nil, 2}, {64, 64, nil, 1},
		{1, 62, nil, 0}, {1000, 1001, &q, 2}, {65535, 65535, nil, 1},
	} {
		if got := p.countIn(c.q, c.lo, c.hi); got != c.want {
			t.Errorf("count in [%d, %d]: %d, want %d", c.lo, c.hi, got, c.want)
		}
	}
}

func TestInetDiagRoundTrip(t *testing.T) {
	for _, s := range fixtureSockets(t) {
		var got Socket
		if err := ParseInetDiagMsg(MarshalInetDiagMsg(&s), &got); err != nil {
			t.Fatal(err)
		}
		// inet_diag_msg expires has millisecond resolution, like the fixture.
		if got != s {
			t.Errorf("round trip: got %+v, want %+v", got, s)
		}
	}
	if err := ParseInetDiagMsg(make([]byte, 71), new(Socket)); err == nil {
		t.Error("no error for a short message")
	}
	b := make([]byte, 72)
	b[0] = 99
	if err := ParseInetDiagMsg(b, new(Socket)); err == nil {
		t.Error("no error for an unknown family")
	}
}

// fakeKernel answers SOCK_DIAG_BY_FAMILY dumps with socks, as multi-part
// replies carrying an INET_DIAG_SHUTDOWN attribute like the kernel's, and
// records the requested state masks.
func fakeKernel(t *testing.T, socks []Socket, masks *[]uint32) nltest.Func {
	return func(req []netlink.Message) ([]netlink.Message, error) {
		if len(req) != 1 {
			t.Fatalf("got %d request messages", len(req))
		}
		m := req[0]
		if m.Header.Type != sockDiagByFamily || m.Header.Flags != netlink.Request|netlink.Dump {
			t.Fatalf("request header %+v", m.Header)
		}
		if len(m.Data) != inetDiagReqLen || m.Data[1] != unix.IPPROTO_TCP {
			t.Fatalf("request data %x", m.Data)
		}
		family := m.Data[0]
		mask := uint32(m.Data[4]) | uint32(m.Data[5])<<8 | uint32(m.Data[6])<<16 | uint32(m.Data[7])<<24
		*masks = append(*masks, mask)
		var out []netlink.Message
		for _, s := range socks {
			b := MarshalInetDiagMsg(&s)
			if b[0] != family || mask&(1<<s.State) == 0 {
				continue
			}
			b = append(b, nltest.MustMarshalAttributes([]netlink.Attribute{{Type: 8, Data: []byte{0}}})...)
			out = append(out, netlink.Message{
				Header: netlink.Header{Type: sockDiagByFamily, Sequence: m.Header.Sequence, PID: nltest.PID},
				Data:   b,
			})
		}
		// The done message closes the dump.
		out = append(out, netlink.Message{Header: netlink.Header{Sequence: m.Header.Sequence}, Data: []byte{0, 0, 0, 0}})
		return nltest.Multipart(out)
	}
}

func TestNetlinkSnapshotFakeKernel(t *testing.T) {
	socks := fixtureSockets(t)
	var masks []uint32
	s := newNetlinkSampler(nltest.Dial(fakeKernel(t, socks, &masks)))
	defer s.Close()
	snap, err := s.Snapshot(fixtureQuery)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Source != SourceNetlink {
		t.Errorf("source %q", snap.Source)
	}
	checkFixtureSnapshot(t, snap)
	if len(masks) != 2 || masks[0] != uint32(AllStates) {
		t.Errorf("state masks %x, want two of %x", masks, uint32(AllStates))
	}

	// Kernel-side filtering: only TIME_WAIT is asked for and returned.
	masks = nil
	snap, err = s.Snapshot(Query{States: StatesOf(TimeWait)})
	if err != nil {
		t.Fatal(err)
	}
	if len(masks) != 2 || masks[0] != 1<<TimeWait {
		t.Errorf("state masks %x, want %x", masks, 1<<TimeWait)
	}
	if snap.All != (StateCounts{TimeWait: 5}) || snap.Matched != snap.All {
		t.Errorf("time-wait only: all %v matched %v", snap.All.Map(), snap.Matched.Map())
	}
}

func TestNetlinkSnapshotError(t *testing.T) {
	s := newNetlinkSampler(nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
		return errReply(unix.EPERM, req)
	}))
	defer s.Close()
	if _, err := s.Snapshot(Query{}); err == nil || !strings.Contains(err.Error(), "dump sockets") {
		t.Errorf("got %v, want a dump error", err)
	}
	// IPv6 missing (ENOENT for AF_INET6) is not an error.
	s6 := newNetlinkSampler(nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req[0].Data[0] == unix.AF_INET6 {
			return errReply(unix.ENOENT, req)
		}
		return nltest.Multipart([]netlink.Message{{Header: netlink.Header{Sequence: req[0].Header.Sequence}, Data: []byte{0, 0, 0, 0}}})
	}))
	defer s6.Close()
	if _, err := s6.Snapshot(Query{}); err != nil {
		t.Errorf("ipv6 missing: %v", err)
	}
}

func TestStateSet(t *testing.T) {
	if AllStates != 0x1ffe {
		t.Errorf("AllStates %x", uint32(AllStates))
	}
	if m := StatesOf(SynRecv).kernelMask(); m != 1<<SynRecv|1<<NewSynRecv {
		t.Errorf("SYN_RECV mask %x", m)
	}
	for st := Established; st < numStates; st++ {
		if got, ok := ParseState(st.String()); !ok || got != st {
			t.Errorf("ParseState(%q) = %v, %v", st.String(), got, ok)
		}
	}
	if State(0).String() != "UNKNOWN" || State(200).String() != "UNKNOWN" {
		t.Error("unknown state names")
	}
}

// errReply is a kernel error reply to req. nltest.Error keeps the request's
// flags, and NLM_F_DUMP shares a bit with NLM_F_ACK_TLVS, so clear them.
func errReply(errno unix.Errno, req []netlink.Message) ([]netlink.Message, error) {
	msgs, err := nltest.Error(int(errno), req)
	for i := range msgs {
		msgs[i].Header.Flags = 0
	}
	return msgs, err
}

func TestTallyManyDestinations(t *testing.T) {
	tl := newTally(Query{}, PortRange{32768, 60999}, SourceNetlink)
	for i := 0; i < 60; i++ {
		d := i % 20
		s := Socket{
			State:  TimeWait,
			Local:  netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(40000+i)),
			Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(d)}), 8086),
		}
		tl.add(&s)
	}
	snap := tl.finish()
	if len(snap.ByDestination) != 20 || len(snap.PortsInUseByDestination) != 20 || snap.PortsInUse != 60 {
		t.Fatalf("%d destinations, %d port pools, %d ports", len(snap.ByDestination), len(snap.PortsInUseByDestination), snap.PortsInUse)
	}
	for d, c := range snap.ByDestination {
		if c[TimeWait] != 3 || snap.PortsInUseByDestination[d] != 3 {
			t.Errorf("%v: %v, %d ports", d, c.Map(), snap.PortsInUseByDestination[d])
		}
	}
}

// datagram concatenates netlink messages as the kernel sends them.
func datagram(t *testing.T, msgs ...netlink.Message) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		m.Header.Length = uint32(nlmsgHdrLen + len(m.Data))
		mb, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, mb...)
	}
	return b
}

func TestParseDumpDatagram(t *testing.T) {
	socks := fixtureSockets(t)
	var msgs []netlink.Message
	for i, s := range socks {
		typ := netlink.HeaderType(tcpDiagGetSock)
		if i%2 == 0 {
			typ = sockDiagByFamily
		}
		msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: typ, Flags: netlink.Multi, Sequence: 7}, Data: MarshalInetDiagMsg(&s)})
	}
	stale := netlink.Message{Header: netlink.Header{Type: sockDiagByFamily, Sequence: 6}, Data: MarshalInetDiagMsg(&socks[0])}
	noop := netlink.Message{Header: netlink.Header{Type: nlmsgNoop, Sequence: 7}}
	done := netlink.Message{Header: netlink.Header{Type: nlmsgDone, Flags: netlink.Multi, Sequence: 7}, Data: []byte{0, 0, 0, 0}}

	var got []Socket
	collect := func(s *Socket) { got = append(got, *s) }
	fin, err := ParseDumpDatagram(datagram(t, append([]netlink.Message{stale, noop}, msgs[:10]...)...), 7, collect)
	if err != nil || fin {
		t.Fatalf("first datagram: done %v, %v", fin, err)
	}
	fin, err = ParseDumpDatagram(datagram(t, append(msgs[10:], done)...), 7, collect)
	if err != nil || !fin {
		t.Fatalf("last datagram: done %v, %v", fin, err)
	}
	if len(got) != len(socks) {
		t.Fatalf("got %d sockets, want %d", len(got), len(socks))
	}
	for i := range got {
		if got[i] != socks[i] {
			t.Errorf("socket %d: %+v, want %+v", i, got[i], socks[i])
		}
	}

	// A dump that fails ends with NLMSG_DONE carrying -errno.
	failed := netlink.Message{Header: netlink.Header{Type: nlmsgDone, Sequence: 7}, Data: []byte{0xff, 0xff, 0xff, 0xff}} // -1: EPERM
	if fin, err := ParseDumpDatagram(datagram(t, failed), 7, collect); !fin || err != unix.EPERM {
		t.Errorf("failed dump: done %v, %v", fin, err)
	}
	errMsg := netlink.Message{Header: netlink.Header{Type: nlmsgError, Sequence: 7}, Data: []byte{0xfe, 0xff, 0xff, 0xff}} // -2: ENOENT
	if fin, err := ParseDumpDatagram(datagram(t, errMsg), 7, collect); !fin || err != unix.ENOENT {
		t.Errorf("error message: done %v, %v", fin, err)
	}
	bad := datagram(t, msgs[0])
	bad[0] = 200 // length beyond the datagram
	if _, err := ParseDumpDatagram(bad, 7, collect); err == nil {
		t.Error("no error for a bad length")
	}
	short := netlink.Message{Header: netlink.Header{Type: sockDiagByFamily, Sequence: 7}, Data: make([]byte, 20)}
	if _, err := ParseDumpDatagram(datagram(t, short), 7, collect); err == nil {
		t.Error("no error for a short inet_diag_msg")
	}
}

func TestNetlinkCompatFakeKernel(t *testing.T) {
	socks := fixtureSockets(t)
	var masks []uint32
	s := newNetlinkSampler(nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
		m := req[0]
		if m.Header.Type != tcpDiagGetSock || len(m.Data) != inetDiagReqCompatLen || m.Data[0] != 0 {
			t.Fatalf("compat request %+v %x", m.Header, m.Data)
		}
		mask := binary.NativeEndian.Uint32(m.Data[52:56])
		masks = append(masks, mask)
		var out []netlink.Message
		for _, sk := range socks {
			if mask&(1<<sk.State) != 0 {
				out = append(out, netlink.Message{Header: netlink.Header{Type: tcpDiagGetSock, Sequence: m.Header.Sequence}, Data: MarshalInetDiagMsg(&sk)})
			}
		}
		out = append(out, netlink.Message{Header: netlink.Header{Sequence: m.Header.Sequence}, Data: []byte{0, 0, 0, 0}})
		return nltest.Multipart(out)
	}))
	s.compat = true
	defer s.Close()
	snap, err := s.Snapshot(fixtureQuery)
	if err != nil {
		t.Fatal(err)
	}
	checkFixtureSnapshot(t, snap)
	if len(masks) != 1 || masks[0] != uint32(AllStates) {
		t.Errorf("one request for both families expected, masks %x", masks)
	}
}

// Established sockets are counted by pending timer: keepalive probing, or
// retransmitting into a flow nobody answers; other states are not.
func TestSnapshotTimers(t *testing.T) {
	dst := netip.MustParseAddrPort("198.18.1.2:5432")
	mk := func(st State, timer uint8, port uint16) Socket {
		return Socket{State: st, Timer: timer, Local: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), port), Remote: dst}
	}
	tl := newTally(Query{Matches: []Match{{Name: "pg", Dst: dst}}}, PortRange{Low: 40000, High: 40199}, "test")
	for _, s := range []Socket{
		mk(Established, TimerKeepalive, 40000), mk(Established, TimerKeepalive, 40001),
		mk(Established, TimerRetransmit, 40002), mk(Established, TimerNone, 40003),
		mk(Established, TimerProbe, 40004), mk(TimeWait, TimerTimeWait, 40005),
	} {
		tl.add(&s)
	}
	got := tl.finish().Timers
	if got != (TimerCounts{Keepalive: 2, Retransmit: 1, Probe: 1}) {
		t.Fatalf("timers %+v", got)
	}
	if m := got.Map(); m["keepalive"] != 2 || m["retransmit"] != 1 || len(m) != 3 {
		t.Fatalf("map %v", m)
	}
	// The same sockets through /proc/net/tcp's "tr" column and inet_diag.
	for _, s := range []Socket{mk(Established, TimerKeepalive, 40000), mk(Established, TimerRetransmit, 40002)} {
		var back Socket
		if err := ParseInetDiagMsg(MarshalInetDiagMsg(&s), &back); err != nil || back.Timer != s.Timer {
			t.Fatalf("inet_diag timer %d, want %d (%v)", back.Timer, s.Timer, err)
		}
	}
	line := []byte("   0: 010012C6:9C40 020112C6:1538 01 00000000:00000000 02:00000E5A 00000000     0        0 12345 1 0000000000000000 20 4 30 10 -1")
	var ps Socket
	if err := ParseProcNetTCP(append([]byte("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"), line...), func(s *Socket) { ps = *s }); err != nil {
		t.Fatal(err)
	}
	if ps.Timer != TimerKeepalive || ps.State != Established {
		t.Fatalf("/proc timer %d state %v, want keepalive, ESTABLISHED", ps.Timer, ps.State)
	}
}

// A /proc walk counts a socket the kernel writes twice once (see procSeen):
// here the fixture's lines 3..8 come again after the last line, as when
// the kernel restarts its walk between two reads. Two SO_REUSEPORT
// listeners on one address (different inodes) stay two.
func TestProcWalkCountsRepeatedLinesOnce(t *testing.T) {
	b, err := os.ReadFile("testdata/proc_net_tcp")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	listener := strings.Replace(lines[1], "36111", "36112", 1)
	if listener == lines[1] {
		t.Fatal("fixture line 1 has no inode 36111")
	}
	repeated := strings.Join(lines, "") + strings.Join(lines[3:9], "") + listener
	path := t.TempDir() + "/tcp"
	if err := os.WriteFile(path, []byte(repeated), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := &Sampler{nsfd: -1, source: SourceProc, tcp: f}
	for walk := 0; walk < 2; walk++ { // the set starts empty on every walk
		var got StateCounts
		if err := s.Walk(0, func(sk *Socket) { got[sk.State]++ }); err != nil {
			t.Fatal(err)
		}
		var want StateCounts
		for _, sk := range fixtureSockets(t)[:9] { // the IPv4 file's sockets
			want[sk.State]++
		}
		want[Listen]++ // the second listener
		if got != want {
			t.Fatalf("walk %d: %v, want %v", walk, got, want)
		}
	}
}

// TestDestPortsFewAndMany: a destination's ports counted in the small
// inline list and after it spills into the bitset agree with a plain set,
// listening ports in the range counted once.
func TestDestPortsFewAndMany(t *testing.T) {
	var listen portSet
	listen.add(40003) // a listener inside the range
	for _, n := range []int{0, 1, 8, 9, 40} {
		var d destTally
		want := map[uint16]bool{40003: true}
		for i := 0; i < n; i++ {
			p := uint16(40000 + (i*7)%50) // repeats after 50
			d.addPort(p)
			d.addPort(p) // twice: counted once
			want[p] = true
		}
		got, ok := d.portsIn(&listen, 1, 40000, 40199)
		if n == 0 {
			if ok {
				t.Errorf("no ports: got %d, ok", got)
			}
			continue
		}
		if !ok || got != len(want) {
			t.Errorf("%d ports added: got %d (ok %v), want %d", n, got, ok, len(want))
		}
		if spilled := d.ports != nil; spilled != (n > len(d.few)) {
			t.Errorf("%d ports: bitset allocated %v", n, spilled)
		}
	}
}

// With a reuse delay, a match counts the sockets whose port connect() cannot
// take: every state but TIME_WAIT, and TIME_WAIT younger than the delay (its
// remaining lifetime above 60 s minus the delay). Matches without one count
// nothing, and no map is made when none has one.
func TestSnapshotBlocked(t *testing.T) {
	dst := netip.MustParseAddrPort("198.18.1.2:8086")
	other := netip.MustParseAddrPort("198.18.1.3:8086")
	mk := func(st State, to netip.AddrPort, port uint16, left time.Duration) Socket {
		return Socket{State: st, Local: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), port), Remote: to, Expires: left}
	}
	socks := []Socket{
		mk(Established, dst, 40000, 0),
		mk(SynSent, dst, 40001, time.Second),
		mk(FinWait2, dst, 40002, 50*time.Second),
		mk(TimeWait, dst, 40003, 59990*time.Millisecond), // 10 ms old
		mk(TimeWait, dst, 40004, 59100*time.Millisecond), // 900 ms old
		mk(TimeWait, dst, 40005, 58900*time.Millisecond), // 1.1 s old: reusable
		mk(TimeWait, dst, 40006, 30*time.Second),
		mk(TimeWait, other, 40007, 59990*time.Millisecond),
		mk(Established, other, 40008, 0),
	}
	q := Query{Matches: []Match{{Name: "a", Dst: dst, ReuseDelay: time.Second}, {Name: "b", Dst: other}}}
	tl := newTally(q, PortRange{Low: 40000, High: 40199}, "test")
	for i := range socks {
		tl.add(&socks[i])
	}
	snap := tl.finish()
	if got := snap.BlockedByMatch; len(got) != 1 || got["a"] != 5 {
		t.Errorf("blocked %v, want a: 5 (3 not in TIME_WAIT, 2 TIME_WAIT under 1 s) and nothing for b", got)
	}
	if snap.ByMatch["a"][TimeWait] != 4 {
		t.Errorf("TIME_WAIT toward a %d, want 4 (the count is unchanged)", snap.ByMatch["a"][TimeWait])
	}
	q.Matches[0].ReuseDelay = 2 * time.Second
	tl = newTally(q, PortRange{Low: 40000, High: 40199}, "test")
	for i := range socks {
		tl.add(&socks[i])
	}
	if got := tl.finish().BlockedByMatch["a"]; got != 6 {
		t.Errorf("blocked with a 2 s delay %d, want 6", got)
	}
	q.Matches[0].ReuseDelay = 0
	tl = newTally(q, PortRange{Low: 40000, High: 40199}, "test")
	for i := range socks {
		tl.add(&socks[i])
	}
	if got := tl.finish().BlockedByMatch; got != nil {
		t.Errorf("blocked without a reuse delay %v, want nil", got)
	}
}
