package lab

// Kernel facts behind NAT when the connection tracking table is full.
// nf_conntrack_max is global and read-only in a child namespace (n7), but
// the kernel compares each namespace's own entry count with it
// (__nf_conntrack_alloc: cnet->count > nf_conntrack_max), so a test-made
// router is filled to the host's max over ctnetlink without changing any
// host setting; its entries die with its namespace.

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/sampler"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The filler entries: TCP flows from ctFillSrc (one address per
// ctFillPerAddr source ports from port 10000) to ctFillDst. No packet ever
// matches them: the lab's traffic runs between 198.18.0.0/24 and
// 198.18.1.0/24.
var (
	ctFillSrc = netip.MustParseAddr("198.19.128.1")
	ctFillDst = netip.MustParseAddrPort("198.19.255.254:9")
)

const ctFillPerAddr = 50000

// TCP conntrack states of the filler entries (enum tcp_conntrack).
const (
	ctEstablished = 3
	ctTimeWait    = 7
)

// ctFillTimeout is the filler entries' timeout: far longer than any test.
const ctFillTimeout = 1800

// ctFillEntry is filler entry i.
func ctFillEntry(i int, state uint8, status uint32) sampler.ConntrackEntry {
	a := ctFillSrc.As4()
	binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(a[:])+uint32(i/ctFillPerAddr))
	src := netip.AddrPortFrom(netip.AddrFrom4(a), uint16(10000+i%ctFillPerAddr))
	return sampler.ConntrackEntry{
		Orig:     sampler.CTTuple{Proto: unix.IPPROTO_TCP, Src: src, Dst: ctFillDst},
		Reply:    sampler.CTTuple{Proto: unix.IPPROTO_TCP, Src: ctFillDst, Dst: src},
		TCPState: state,
		TimeoutS: ctFillTimeout,
		Status:   status,
	}
}

// isFiller reports whether a dumped entry is a filler entry.
func isFiller(e *sampler.ConntrackEntry) bool { return e.Orig.Dst == ctFillDst }

// ctFill creates filler entries first .. first+n-1 in the router's
// conntrack table over ctnetlink (IPCTNL_MSG_CT_NEW with NLM_F_CREATE |
// NLM_F_EXCL, acknowledged in batches), in TCP state state with status
// bits status, and returns how long it took.
func ctFill(t *testing.T, l *Lab, first, n int, state uint8, status uint32) time.Duration {
	t.Helper()
	var conn *netlink.Conn
	if err := Do(l.NSPath(l.RouterNS), func() error {
		var err error
		conn, err = netlink.Dial(unix.NETLINK_NETFILTER, nil)
		return err
	}); err != nil {
		t.Fatalf("dial ctnetlink in the router: %v", err)
	}
	defer conn.Close()
	const batch = 256
	typ := netlink.HeaderType(1<<8 | 0) // NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW
	flags := netlink.Request | netlink.Create | netlink.Excl | netlink.Acknowledge
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	msgs := make([]netlink.Message, 0, batch)
	for i := first; i < first+n; {
		if time.Now().After(deadline) {
			t.Fatalf("fill conntrack: %d of %d entries after %v", i-first, n, time.Since(start))
		}
		msgs = msgs[:0]
		for ; i < first+n && len(msgs) < batch; i++ {
			e := ctFillEntry(i, state, status)
			b, err := sampler.MarshalConntrackMsg(&e)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: typ, Flags: flags}, Data: b})
		}
		if _, err := conn.SendMessages(msgs); err != nil {
			t.Fatalf("fill conntrack: send: %v", err)
		}
		for acks := 0; acks < len(msgs); {
			got, err := conn.Receive()
			if err != nil {
				t.Fatalf("fill conntrack: entry %d of %d: %v", i-first-len(msgs)+acks, n, err)
			}
			acks += len(got)
		}
	}
	return time.Since(start)
}

// ctCount reads the router's entry count and nf_conntrack_max.
func ctCount(t *testing.T, l *Lab) (count, max int) {
	t.Helper()
	c, err := sampler.OpenConntrack(l.NSPath(l.RouterNS))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, count, max, err = c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return count, max
}

// ctFillStates counts the router's filler entries by TCP state and whether
// they are assured, and its other entries.
func ctFillStates(t *testing.T, l *Lab) (fill map[string]int, other int) {
	t.Helper()
	c, err := sampler.OpenConntrack(l.NSPath(l.RouterNS))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fill = map[string]int{}
	err = c.Dump(func(e *sampler.ConntrackEntry) {
		if !isFiller(e) {
			other++
			return
		}
		k := sampler.CTState(e.TCPState)
		if e.Status&sampler.CTStatusAssured != 0 {
			k += " assured"
		}
		fill[k]++
	})
	if err != nil {
		t.Fatal(err)
	}
	return fill, other
}

// hostCTMax is the host's nf_conntrack_max, which every namespace's count
// is compared with.
func hostCTMax(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_max")
	if err != nil {
		t.Fatalf("is nf_conntrack loaded? %v", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || v <= 0 {
		t.Fatalf("nf_conntrack_max %q: want a positive limit", b)
	}
	return v
}

// ctSegment is a run of filler entries: n of them (-1: the rest of the
// table) in TCP state state, ASSURED or not.
type ctSegment struct {
	n       int
	state   uint8
	assured bool
}

// fullTable is a NAT lab whose router's table is filled to
// nf_conntrack_max.
type fullTable struct {
	*Lab
	dst  netip.AddrPort
	max  int
	next int // the next filler index
}

// fullLab creates a NAT lab (clients with tcp_syn_retries=synRetries) and
// fills its router's table to nf_conntrack_max with the segments of filler
// entries in order. It checks that the count is the max.
func fullLab(t *testing.T, synRetries string, segs ...ctSegment) *fullTable {
	t.Helper()
	max := hostCTMax(t)
	l, dst := natLab(t, NATOptions{}, map[string]string{"net.ipv4.tcp_syn_retries": synRetries}, serverReadClose)
	count, rmax := ctCount(t, l)
	if rmax != max {
		t.Fatalf("router nf_conntrack_max %d, host %d: want the global value", rmax, max)
	}
	f := &fullTable{Lab: l, dst: dst, max: max}
	var took time.Duration
	var done []string
	for _, sg := range segs {
		n := sg.n
		if n < 0 || n > max-count-f.next {
			n = max - count - f.next
		}
		took += f.fill(t, n, sg)
		done = append(done, fmt.Sprintf("%d %s assured=%v", n, sampler.CTState(sg.state), sg.assured))
	}
	if c, _ := ctCount(t, l); c != max {
		t.Fatalf("router count %d after filling %d entries, want nf_conntrack_max %d", c, f.next, max)
	}
	t.Logf("filled the router to nf_conntrack_max %d (%d entries before): %s, in %v", max, count, strings.Join(done, ", "), took.Round(time.Millisecond))
	return f
}

// fill adds n filler entries as sg says.
func (f *fullTable) fill(t *testing.T, n int, sg ctSegment) time.Duration {
	t.Helper()
	var status uint32
	if sg.assured {
		status = sampler.CTStatusAssured | sampler.CTStatusSeenReply | sampler.CTStatusConfirmed
	}
	took := ctFill(t, f.Lab, f.next, n, sg.state, status)
	f.next += n
	return took
}

// topUp fills the table to the max again with entries as sg says (after
// early drops, or the collector's kills) and returns how many it added.
func (f *fullTable) topUp(t *testing.T, sg ctSegment) int {
	t.Helper()
	c, _ := ctCount(t, f.Lab)
	if c < f.max {
		f.fill(t, f.max-c, sg)
	}
	return max(f.max-c, 0)
}

// tableFullEarlyDrop: with the router's table at
// nf_conntrack_max and entries that are not ASSURED, a new flow's entry
// takes the place of such entries (early_drop: every unassured entry of
// the first hash chain, of 8 from the new flow's bucket, that has one):
// each flow goes through at once, no SYN is dropped.
func tableFullEarlyDrop(t *testing.T) {
	unassured := ctSegment{n: -1, state: ctEstablished}
	f := fullLab(t, "1", unassured)
	const n = 10
	var m natMeasured
	m.before = ctStats(t, f.Lab)
	cb := tcpExt(t, f.NSPath(f.ClientNS))
	added := 0
	for range n {
		added += f.topUp(t, unassured) // every flow finds the table full
		m.rs = append(m.rs, natRun(t, f.NSPath(f.ClientNS), f.dst, closeClientWait, 1)...)
	}
	m.slow, m.failed, m.first = slowAndFailed(m.rs)
	m.after = ctStats(t, f.Lab)
	m.retrans = tcpExt(t, f.NSPath(f.ClientNS))["TCPSynRetrans"] - cb["TCPSynRetrans"]
	count, _ := ctCount(t, f.Lab)
	if m.failed != 0 || m.retrans != 0 || m.delta("drop") != 0 {
		t.Errorf("%d flows through a full table of unassured entries: %d failed (first %v), %d SYN retransmissions, %s; want all through at once, no drop", n, m.failed, m.first, m.retrans, m.stats())
	}
	if m.delta("early_drop") < n || count > f.max {
		t.Errorf("router after %d flows, each into a full table: %s, count %d (max %d); want at least one early drop per flow, the count at most the max", n, m.stats(), count, f.max)
	}
	t.Logf("FACT nat-ctmax-early-drop: table at nf_conntrack_max %d with unassured ESTABLISHED entries, topped up before each flow (%d entries added in all): %d new flows %d ok, %d SYN retransmissions; %s; count after %d",
		f.max, added, n, m.ok(), m.retrans, m.stats(), count)
}

// tableFullAssured: with the router's table at nf_conntrack_max
// and every entry ASSURED and ESTABLISHED, no entry can be dropped for a
// new flow: the router drops each SYN ("nf_conntrack: table full, dropping
// packet", conntrack drop +1 per SYN, no insert_failed, no early_drop) and
// the client's connect() fails with ETIMEDOUT when its SYN retries run
// out, as when the translated ports run out (n5).
func tableFullAssured(t *testing.T) {
	f := fullLab(t, "1", ctSegment{n: -1, state: ctEstablished, assured: true})
	l, dst, max := f.Lab, f.dst, f.max
	before, cb := ctStats(t, l), tcpExt(t, l.NSPath(l.ClientNS))
	r := natRun(t, l.NSPath(l.ClientNS), dst, closeClient, 1)[0]
	after, ca := ctStats(t, l), tcpExt(t, l.NSPath(l.ClientNS))
	sent := 1 + ca["TCPSynRetrans"] - cb["TCPSynRetrans"]
	count, _ := ctCount(t, l)
	if r.ok() || r.Op != "connect" || r.Errno != unix.ETIMEDOUT || r.Took < 2500*time.Millisecond {
		t.Errorf("flow through a full table of assured ESTABLISHED entries: %v after %v, want connect ETIMEDOUT after about 3 s", r.dialResult, r.Took)
	}
	if d := after["drop"] - before["drop"]; d != sent || after["early_drop"] != before["early_drop"] || after["insert_failed"] != before["insert_failed"] {
		t.Errorf("router counters %s, want drop = %d SYNs sent, no early_drop, no insert_failed", statDelta(after, before), sent)
	}
	if count != max {
		t.Errorf("router count %d after the flow, want still %d", count, max)
	}
	t.Logf("FACT nat-ctmax-assured: table at nf_conntrack_max %d, all ASSURED ESTABLISHED: connect %v after %.1f s (tcp_syn_retries=1), %d SYNs sent; %s; count %d",
		max, r.dialResult, r.Took.Seconds(), sent, statDelta(after, before), count)
}

// tableFullClosing: ASSURED entries in a closing state
// (TIME_WAIT here) are not dropped for a new flow at once either: its SYNs
// are dropped and connect() times out. But the failed allocation arms the
// conntrack garbage collector's early drop for its next pass
// (gc_work.early_drop; the pass comes up to about a minute later): while
// the namespace's count is at 95 % of the max or more, that pass kills
// assured entries whose TCP state can be early-dropped (tcp_can_early_drop:
// FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE), a few hundred at most
// (it stops after GC_SCAN_EXPIRED_MAX entries and the next pass is not
// armed), never an ESTABLISHED one, and counts none of them in
// early_drop. A new flow then goes through at once.
func tableFullClosing(t *testing.T) {
	max := hostCTMax(t)
	tws := ctSegment{n: max / 2, state: ctTimeWait, assured: true}
	f := fullLab(t, "1", tws, ctSegment{n: -1, state: ctEstablished, assured: true})
	l := f.Lab
	f.topUp(t, tws) // a collector pass armed before this test may have run
	fill0, _ := ctFillStates(t, l)
	before, cb := ctStats(t, l), tcpExt(t, l.NSPath(l.ClientNS))
	r := natRun(t, l.NSPath(l.ClientNS), f.dst, closeClient, 1)[0]
	start := time.Now()
	mid, cm := ctStats(t, l), tcpExt(t, l.NSPath(l.ClientNS))
	sent := 1 + cm["TCPSynRetrans"] - cb["TCPSynRetrans"]
	if r.ok() || r.Errno != unix.ETIMEDOUT || mid["drop"]-before["drop"] != sent || mid["early_drop"] != before["early_drop"] {
		t.Fatalf("flow through a full table of assured entries, half TIME_WAIT: %v after %v, %d SYNs sent, router %s; want connect ETIMEDOUT, every SYN dropped, no early_drop",
			r.dialResult, r.Took, sent, statDelta(mid, before))
	}
	// The collector's next pass: poll the count (at most 90 s; its
	// passes are at most about 60 s apart).
	var freed time.Duration
	for freed == 0 && time.Since(start) < 90*time.Second {
		time.Sleep(250 * time.Millisecond)
		if c, _ := ctCount(t, l); c < f.max {
			freed = time.Since(start)
		}
	}
	time.Sleep(time.Second) // let the pass end
	fill, _ := ctFillStates(t, l)
	tw, est := "TIME_WAIT assured", "ESTABLISHED assured"
	killed := fill0[tw] - fill[tw]
	if freed == 0 || killed < 1 || killed > f.max/20 || fill[est] != fill0[est] {
		t.Fatalf("filler entries before %v, %v after the dropped SYNs %v: want 1 to %d (5 %% of the max) TIME_WAIT entries killed, every ESTABLISHED one kept", fill0, time.Since(start), fill, f.max/20)
	}
	m := measureRun(t, l, f.dst, closeClientWait, 1)
	if m.failed != 0 || m.retrans != 0 || m.delta("drop") != 0 || m.delta("early_drop") != 0 {
		t.Errorf("flow after the collector's pass: %d failed (first %v), %d SYN retransmissions, %s; want through at once", m.failed, m.first, m.retrans, m.stats())
	}
	t.Logf("FACT nat-ctmax-closing: table at nf_conntrack_max %d, all ASSURED, %d TIME_WAIT + %d ESTABLISHED: connect %v after %.1f s (tcp_syn_retries=1), %d SYNs dropped (%s); the collector freed entries %.1f s later: %d TIME_WAIT killed, %d ESTABLISHED kept, early_drop +%d; the next flow: %d ok, %d SYN retransmissions",
		f.max, fill0[tw], fill0[est], r.dialResult, r.Took.Seconds(), sent, statDelta(mid, before), freed.Seconds(), killed, fill[est], m.after["early_drop"]-before["early_drop"], m.ok(), m.retrans)
}

// TestNATFactTableFull runs the full-table facts one after the other, in
// an order that leaves no collector pass armed for the next one: a SYN
// dropped for a full table arms the conntrack collector's early drop for
// every namespace, and its next pass would kill another fact's entries.
// closing waits for the pass its own drops armed; early-drop drops no SYN;
// assured comes last.
func TestNATFactTableFull(t *testing.T) {
	t.Parallel()
	t.Run("closing", tableFullClosing)
	t.Run("early-drop", tableFullEarlyDrop)
	t.Run("assured", tableFullAssured)
}
