package lab

// Kernel facts behind NAT, as tests: a router namespace masquerades the
// client namespaces' flows to a small translated port range (NATOptions),
// and each test checks one behaviour of the translator that the NAT model
// relies on. Every loop is bounded in count and in time.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const natPorts = 20 // translated ports of the NAT fact tests

// Close modes of natDial.
const (
	closeClient     = "client"      // close() at once: the client closes first
	closeClientWait = "client-wait" // shutdown(SHUT_WR), read to EOF, close(): client first, flow ends before the next
	closeAfterPeer  = "server"      // read to EOF (the server closes first), then close()
	closeRST        = "rst"         // SO_LINGER 0: close() sends a RST
	closeNone       = "open"        // leave the socket open (returned)
)

// natDialResult is one connection through the NAT.
type natDialResult struct {
	dialResult
	Took time.Duration // connect() to established (or to the failure)
	FD   int           // the open socket with closeNone, else -1
}

// natDial connects to dst from the calling thread's namespace, waiting up
// to connectWait for the handshake (the kernel's own SYN retries end it
// first when connectWait is long), then closes as mode says. It must run
// inside Do.
func natDial(dst netip.AddrPort, mode string, connectWait time.Duration) natDialResult {
	r := natDialResult{FD: -1}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		r.Op, r.Errno = "socket", err.(syscall.Errno)
		return r
	}
	keep := false
	defer func() {
		if !keep {
			unix.Close(fd)
		}
	}()
	start := time.Now()
	err = unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
	if err != nil && err != unix.EINPROGRESS {
		r.Op, r.Errno = "connect", err.(syscall.Errno)
		return r
	}
	if err == unix.EINPROGRESS {
		if !waitFD(fd, unix.POLLOUT, connectWait) {
			r.Took, r.Op, r.Errno = time.Since(start), "connect", unix.ETIMEDOUT
			return r
		}
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		r.Took = time.Since(start)
		if err != nil || soerr != 0 {
			r.Op, r.Errno = "connect", syscall.Errno(soerr)
			return r
		}
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		r.Port = sa.(*unix.SockaddrInet4).Port
	}
	readEOF := func() {
		var b [16]byte
		for range 4 {
			if !waitFD(fd, unix.POLLIN, 3*time.Second) {
				return
			}
			if n, err := unix.Read(fd, b[:]); n <= 0 && err != unix.EAGAIN {
				return
			}
		}
	}
	switch mode {
	case closeClientWait:
		_ = unix.Shutdown(fd, unix.SHUT_WR)
		readEOF()
	case closeAfterPeer:
		readEOF()
	case closeRST:
		_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	case closeNone:
		keep, r.FD = true, fd
	}
	return r
}

// Server behaviours of natListen.
const (
	serverReadClose = "read-close" // read to EOF, then close: the client closes first
	serverClose     = "close"      // close at once: the server closes first
	serverHold      = "hold"       // never close before the test ends
)

// natListen listens on dst in the server namespace and serves as mode says.
func natListen(t *testing.T, l *Lab, dst netip.AddrPort, mode string) {
	t.Helper()
	ln := serverListener(t, l, dst)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var held []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			switch mode {
			case serverClose:
				c.Close()
			case serverHold:
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			default:
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
					_, _ = io.Copy(io.Discard, c)
					c.Close()
				}()
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// routerCmd runs a command in the lab's router namespace and returns its
// standard output.
func routerCmd(t *testing.T, l *Lab, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.RouterNS, name}, args...)...).Output()
	if err != nil {
		t.Fatalf("%s %v in the router: %v", name, args, err)
	}
	return string(out)
}

// ctStates counts the router's TCP conntrack entries by state, from
// `conntrack -L -p tcp`.
func ctStates(t *testing.T, l *Lab) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, line := range strings.Split(routerCmd(t, l, "conntrack", "-L", "-p", "tcp"), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[0] == "tcp" {
			out[f[3]]++
		}
	}
	return out
}

// ctTranslatedPorts lists the translated ports (reply dport) of the
// router's TCP conntrack entries.
func ctTranslatedPorts(t *testing.T, l *Lab) map[int]int {
	t.Helper()
	out := map[int]int{}
	for _, line := range strings.Split(routerCmd(t, l, "conntrack", "-L", "-p", "tcp"), "\n") {
		var dports []string
		for _, f := range strings.Fields(line) {
			if p, ok := strings.CutPrefix(f, "dport="); ok {
				dports = append(dports, p)
			}
		}
		if len(dports) == 2 {
			p, _ := strconv.Atoi(dports[1])
			out[p]++
		}
	}
	return out
}

// ctStats sums the router's `conntrack -S` counters over the CPUs.
func ctStats(t *testing.T, l *Lab) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, line := range strings.Split(routerCmd(t, l, "conntrack", "-S"), "\n") {
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, "=")
			if !ok || k == "cpu" {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil {
				out[k] += n
			}
		}
	}
	return out
}

func statDelta(after, before map[string]int64) string {
	var parts []string
	for _, k := range []string{"insert_failed", "drop", "early_drop", "clash_resolve", "invalid"} {
		parts = append(parts, fmt.Sprintf("%s=%d", k, after[k]-before[k]))
	}
	return strings.Join(parts, " ")
}

// natRun makes n connections one after the other from the namespace at
// nsPath, each closed as mode says, and returns them.
func natRun(t *testing.T, nsPath string, dst netip.AddrPort, mode string, n int) []natDialResult {
	t.Helper()
	var rs []natDialResult
	deadline := time.Now().Add(30 * time.Second)
	err := Do(nsPath, func() error {
		for i := 0; i < n && time.Now().Before(deadline); i++ {
			rs = append(rs, natDial(dst, mode, 5*time.Second))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// slowAndFailed counts the connections whose handshake needed a SYN
// retransmission (took 900 ms or more: the first retransmission is 1 s after
// the SYN) and those that failed.
func slowAndFailed(rs []natDialResult) (slow, failed int, first dialResult) {
	for _, r := range rs {
		if !r.ok() {
			if failed == 0 {
				first = r.dialResult
			}
			failed++
			continue
		}
		if r.Took >= 900*time.Millisecond {
			slow++
		}
	}
	return slow, failed, first
}

// waitCT polls the router's conntrack table until cond holds (at most 5 s).
func waitCT(t *testing.T, l *Lab, cond func(map[string]int) bool) map[string]int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := ctStates(t, l)
		if cond(s) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// natLab creates a NAT lab with natPorts translated ports, a client port
// range far larger (so the clients' own ports never run out) and a server
// behaving as serverMode.
func natLab(t *testing.T, n NATOptions, client map[string]string, serverMode string) (*Lab, netip.AddrPort) {
	t.Helper()
	if n.Ports == 0 {
		n.Ports = natPorts
	}
	l := newLab(t, Options{Ports: 2000, Sysctls: client, NAT: &n})
	dst := netip.AddrPortFrom(l.ServerAddrs[0], factPort)
	natListen(t, l, dst, serverMode)
	return l, dst
}

// natMeasured is a run of flows through the NAT with the counters around
// it.
type natMeasured struct {
	rs            []natDialResult
	slow, failed  int
	first         dialResult
	retrans       int64            // the client's TCPSynRetrans increase
	listenDrops   int64            // the server's ListenDrops increase (SYNs its full accept queue dropped)
	before, after map[string]int64 // the router's conntrack -S
}

func (m natMeasured) ok() int              { return len(m.rs) - m.failed }
func (m natMeasured) delta(k string) int64 { return m.after[k] - m.before[k] }
func (m natMeasured) stats() string        { return statDelta(m.after, m.before) }

// measureRun makes n flows from the lab's first client, closed as mode
// says, and reads the counters before and after.
func measureRun(t *testing.T, l *Lab, dst netip.AddrPort, mode string, n int) natMeasured {
	t.Helper()
	m := natMeasured{before: ctStats(t, l)}
	cb := tcpExt(t, l.NSPath(l.ClientNS))
	sb := tcpExt(t, l.NSPath(l.ServerNS))
	m.rs = natRun(t, l.NSPath(l.ClientNS), dst, mode, n)
	m.slow, m.failed, m.first = slowAndFailed(m.rs)
	m.after = ctStats(t, l)
	m.retrans = tcpExt(t, l.NSPath(l.ClientNS))["TCPSynRetrans"] - cb["TCPSynRetrans"]
	m.listenDrops = tcpExt(t, l.NSPath(l.ServerNS))["ListenDrops"] - sb["ListenDrops"]
	return m
}

// evicted runs 3 x natPorts flows closed as mode says, each ended before
// the next, and checks that they all go through at once (no SYN
// retransmission, no router drop) and that the router keeps only entries
// in state, at most one per translated port.
func evicted(t *testing.T, mode, state string) (natMeasured, map[string]int) {
	t.Helper()
	l, dst := natLab(t, NATOptions{}, nil, serverReadClose)
	const n = 3 * natPorts
	m := measureRun(t, l, dst, mode, n)
	st := waitCT(t, l, func(s map[string]int) bool { return s[state] == natPorts })
	if m.failed != 0 || m.retrans != 0 || m.delta("drop") != 0 {
		t.Errorf("%d flows closed by %s through %d ports: %d failed (first %v), %d SYN retransmissions, %s; want all at once, no drop", n, mode, natPorts, m.failed, m.first, m.retrans, m.stats())
	}
	if st[state] < natPorts/2 || st[state] > natPorts || len(st) != 1 {
		t.Errorf("router conntrack %v after %d flows, want only %s entries, at most one per translated port (%d)", st, n, state, natPorts)
	}
	return m, st
}

// TestNATFactTimeWaitEvicted: a conntrack entry in TIME_WAIT does not hold
// its translated port. When every port of the range is taken, the NAT's
// last 32 port attempts (NF_NAT_HARDER_THRESH) evict a colliding entry in
// TIME_WAIT or CLOSE whose flow's last sequence number the new SYN's is
// past (nf_nat_used_tuple_harder): 3 x 20 client-closed flows go through
// 20 translated ports without a drop, and conntrack keeps one TIME_WAIT
// entry per port, not one per flow.
func TestNATFactTimeWaitEvicted(t *testing.T) {
	t.Parallel()
	m, st := evicted(t, closeClientWait, "TIME_WAIT")
	t.Logf("FACT nat-tw: %d client-closed flows (each ended before the next) through %d translated ports: %d ok, %d SYN retransmissions (%d flows took 900 ms or more); router conntrack %v; %s",
		len(m.rs), natPorts, m.ok(), m.retrans, m.slow, st, m.stats())
}

// TestNATFactRSTClose: a flow closed by a RST (SO_LINGER 0) leaves a
// conntrack entry in CLOSE (nf_conntrack_tcp_timeout_close, 10 s), which a
// new flow evicts like TIME_WAIT: no hold, no drop.
func TestNATFactRSTClose(t *testing.T) {
	t.Parallel()
	m, st := evicted(t, closeRST, "CLOSE")
	t.Logf("FACT nat-rst: %d RST-closed flows through %d translated ports: %d ok, %d SYN retransmissions; router conntrack %v; %s",
		len(m.rs), natPorts, m.ok(), m.retrans, st, m.stats())
}

// TestNATFactClosingHolds: flows still closing (FIN exchanged but not yet in
// TIME_WAIT) hold their translated ports like open ones. A burst of
// client-closed flows that does not wait for the server's FIN opens flows
// while earlier ones are in FIN_WAIT/CLOSE_WAIT/LAST_ACK; when no port is
// free or evictable the SYN is dropped (insert_failed and drop each count
// it) and the client's retransmission 1 s later goes through: every flow
// completes, some a second late.
func TestNATFactClosingHolds(t *testing.T) {
	t.Parallel()
	l, dst := natLab(t, NATOptions{}, nil, serverReadClose)
	const n = 10 * natPorts
	m := measureRun(t, l, dst, closeClient, n)
	if m.failed != 0 {
		t.Errorf("%d flows: %d failed (first %v), want every one through (late at worst)", n, m.failed, m.first)
	}
	// Each SYN the router dropped is sent again. On a busy machine a few
	// more are (the server's accept queue full, or a SYN-ACK later than
	// the 1 s initial RTO: a CI run saw 4 retransmissions for 3 drops), so
	// the retransmissions are at least the drops, not equal to them.
	drop := m.delta("drop")
	if drop == 0 || drop != m.delta("insert_failed") || m.retrans < drop {
		t.Errorf("client TCPSynRetrans +%d, server ListenDrops +%d, conntrack %s: want drop = insert_failed > 0 and at least as many SYN retransmissions", m.retrans, m.listenDrops, m.stats())
	}
	t.Logf("FACT nat-closing: burst of %d client-closed flows not waiting for the server's FIN, %d translated ports: %d ok, %d SYN retransmissions (%d flows 900 ms or more late, %d SYNs dropped by the server's accept queue); %s",
		n, natPorts, m.ok(), m.retrans, m.slow, m.listenDrops, m.stats())
}

// TestNATFactServerClosesFirst: with the server closing first the server
// holds TIME_WAIT on the translated 4-tuple, and the router a TIME_WAIT
// conntrack entry. A new flow on the same translated port evicts the
// conntrack entry (its SYN's sequence number is past the old flow's), but
// the server's TIME_WAIT socket rejects the SYN when its timestamp is older
// than the old flow's (PAWSTimewait: the client's timestamp offsets differ
// between its connections), answers with an ACK, the client resets (which
// kills that TIME_WAIT) and sends its SYN again: every rejection costs one
// SYN retransmission (TCPSynRetrans), at once, or 1 s later when the
// server's TIME_WAIT ACK was rate limited. No flow fails; the server holds
// at most one TIME_WAIT per translated port, the client none.
func TestNATFactServerClosesFirst(t *testing.T) {
	t.Parallel()
	l, dst := natLab(t, NATOptions{}, nil, serverClose)
	sb := tcpExt(t, l.NSPath(l.ServerNS))
	const n = 3 * natPorts
	m := measureRun(t, l, dst, closeAfterPeer, n)
	paws := tcpExt(t, l.NSPath(l.ServerNS))["PAWSTimewait"] - sb["PAWSTimewait"]
	srv := waitStates(t, l.NSPath(l.ServerNS), 5*time.Second, func(s map[string]int) bool { return s["TIME_WAIT"] == natPorts })
	cli := tcpStates(t, l.NSPath(l.ClientNS))
	if m.failed != 0 {
		t.Errorf("%d server-closed flows: %d failed (first %v)", n, m.failed, m.first)
	}
	if srv["TIME_WAIT"] < 1 || srv["TIME_WAIT"] > natPorts || cli["TIME_WAIT"] != 0 {
		t.Errorf("TIME_WAIT: server %d (want 1..%d, one per translated port at most), client %d (want 0)", srv["TIME_WAIT"], natPorts, cli["TIME_WAIT"])
	}
	if paws == 0 || m.retrans != paws || m.delta("drop") != 0 {
		t.Errorf("server PAWSTimewait +%d, client TCPSynRetrans +%d, router %s: want PAWS rejections, each costing one SYN retransmission, no router drop", paws, m.retrans, m.stats())
	}
	t.Logf("FACT nat-server-closes: %d server-closed flows through %d translated ports: %d ok; server PAWSTimewait +%d = client TCPSynRetrans +%d, %d flows 1 s late; server TIME_WAIT %d, client TIME_WAIT %d; %s",
		n, natPorts, m.ok(), paws, m.retrans, m.slow, srv["TIME_WAIT"], cli["TIME_WAIT"], m.stats())
}

// TestNATFactExhaustion: flows that are open, or closed by the client while
// the server keeps its end (conntrack CLOSE_WAIT), hold their translated
// port. With every port held the next SYN is dropped by the router (each
// transmission counts once in insert_failed and in drop) and the client
// sees no error from connect() until its SYN retries run out: ETIMEDOUT
// (tcp_syn_retries=1: after 1 + 2 s), never EADDRNOTAVAIL.
func TestNATFactExhaustion(t *testing.T) {
	t.Parallel()
	l, dst := natLab(t, NATOptions{}, map[string]string{"net.ipv4.tcp_syn_retries": "1"}, serverHold)
	var open []natDialResult
	err := Do(l.NSPath(l.ClientNS), func() error {
		for i := range natPorts {
			mode := closeNone
			if i%2 == 1 {
				mode = closeClient // the server holds its end: CLOSE_WAIT
			}
			open = append(open, natDial(dst, mode, 5*time.Second))
		}
		return nil
	})
	defer func() {
		for _, r := range open {
			if r.FD >= 0 {
				unix.Close(r.FD)
			}
		}
	}()
	if err != nil {
		t.Fatal(err)
	}
	if _, failed, first := slowAndFailed(open); failed != 0 {
		t.Fatalf("opening %d flows: %d failed (first %v)", natPorts, failed, first)
	}
	st := waitCT(t, l, func(s map[string]int) bool { return s["ESTABLISHED"] == natPorts/2 && s["CLOSE_WAIT"] == natPorts/2 })
	before, cb := ctStats(t, l), tcpExt(t, l.NSPath(l.ClientNS))
	rs := natRun(t, l.NSPath(l.ClientNS), dst, closeClient, 1)
	after, ca := ctStats(t, l), tcpExt(t, l.NSPath(l.ClientNS))
	sent := 1 + ca["TCPSynRetrans"] - cb["TCPSynRetrans"]
	r := rs[0]
	if r.ok() || r.Op != "connect" || r.Errno != unix.ETIMEDOUT || r.Took < 2500*time.Millisecond {
		t.Errorf("flow %d with every port held: %v after %v, want connect ETIMEDOUT after about 3 s", natPorts+1, r.dialResult, r.Took)
	}
	if after["insert_failed"]-before["insert_failed"] != sent || after["drop"]-before["drop"] != sent {
		t.Errorf("router counters %s, want insert_failed = drop = %d SYNs sent", statDelta(after, before), sent)
	}
	t.Logf("FACT nat-exhausted: %d translated ports held (conntrack %v): next connect %v after %.1f s (tcp_syn_retries=1), %d SYNs sent; %s",
		natPorts, st, r.dialResult, r.Took.Seconds(), sent, statDelta(after, before))
}

// TestNATFactClientsShare: clients behind one translated address share its
// port range per destination: two clients holding half the range each
// exhaust it for both.
func TestNATFactClientsShare(t *testing.T) {
	t.Parallel()
	l, dst := natLab(t, NATOptions{Clients: 2}, map[string]string{"net.ipv4.tcp_syn_retries": "1"}, serverHold)
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for i, ns := range l.ClientNSs {
		err := Do(l.NSPath(ns), func() error {
			for range natPorts / 2 {
				r := natDial(dst, closeNone, 5*time.Second)
				if !r.ok() {
					return fmt.Errorf("client %d: %v", i, r.dialResult)
				}
				fds = append(fds, r.FD)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ports := ctTranslatedPorts(t, l)
	var res []string
	for i, ns := range l.ClientNSs {
		r := natRun(t, l.NSPath(ns), dst, closeClient, 1)[0]
		res = append(res, fmt.Sprintf("client %d: %v after %.1f s", i, r.dialResult, r.Took.Seconds()))
		if r.Errno != unix.ETIMEDOUT {
			t.Errorf("client %d with the range held by both: %v, want ETIMEDOUT", i, r.dialResult)
		}
	}
	if len(ports) != natPorts {
		t.Errorf("translated ports in use %d, want %d", len(ports), natPorts)
	}
	t.Logf("FACT nat-share: 2 clients x %d open flows hold all %d translated ports; then %s", natPorts/2, len(ports), strings.Join(res, "; "))
}

// TestNATFactTimeWaitTimeout: nf_conntrack_tcp_timeout_time_wait is per
// namespace: set in the router it ends the TIME_WAIT entries there and
// leaves the host's value alone. nf_conntrack_max and
// nf_conntrack_buckets are global: read-only in a child namespace.
func TestNATFactTimeWaitTimeout(t *testing.T) {
	t.Parallel()
	const key = "net.netfilter.nf_conntrack_tcp_timeout_time_wait"
	host, err := Sysctls("", []string{key})
	if err != nil {
		t.Fatal(err)
	}
	const tw = 3 * time.Second
	l, dst := natLab(t, NATOptions{Sysctls: map[string]string{key: "3"}}, nil, serverReadClose)
	rs := natRun(t, l.NSPath(l.ClientNS), dst, closeClientWait, natPorts)
	start := time.Now() // the last flow's entry entered TIME_WAIT before this
	if _, failed, first := slowAndFailed(rs); failed != 0 {
		t.Fatalf("%d flows: %d failed (first %v)", natPorts, failed, first)
	}
	st := ctStates(t, l)
	end := waitCT(t, l, func(s map[string]int) bool { return len(s) == 0 })
	gone := time.Since(start)
	if st["TIME_WAIT"] < 1 || len(end) != 0 || gone > tw+1500*time.Millisecond {
		t.Errorf("conntrack after %d flows %v, %v later %v: want the TIME_WAIT entries gone within the %v timeout", natPorts, st, gone, end, tw)
	}
	now, err := Sysctls("", []string{key})
	if err != nil || now[key] != host[key] {
		t.Errorf("host %s changed from %q to %q (%v)", key, host[key], now[key], err)
	}
	var werr error
	for _, k := range []string{"nf_conntrack_max", "nf_conntrack_buckets"} {
		werr = Do(l.NSPath(l.RouterNS), func() error {
			return os.WriteFile("/proc/sys/net/netfilter/"+k, []byte("1000"), 0)
		})
		if !os.IsPermission(werr) {
			t.Errorf("write %s in a child namespace: %v, want permission denied (global key)", k, werr)
		}
	}
	t.Logf("FACT nat-tw-timeout: router %s=3: %d TIME_WAIT entries gone %.1f s later; host value stays %s; nf_conntrack_max/buckets in a child namespace: %v",
		key, st["TIME_WAIT"], gone.Seconds(), host[key], werr)
}

// TestNATFactPortSelection: without a flag masquerade keeps the client's
// own source port when it lies in the translated range and is free;
// random and fully-random (NF_NAT_RANGE_PROTO_RANDOM_ALL) always pick a
// random port of the range.
func TestNATFactPortSelection(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{NATFlagNone, NATFlagRandom, NATFlagFullyRandom} {
		t.Run("flag="+flag, func(t *testing.T) {
			t.Parallel()
			r := NATPortRange(natPorts)
			l := newLab(t, Options{
				Sysctls: map[string]string{portRangeKey: fmt.Sprintf("%d %d", r[0], r[1])},
				NAT:     &NATOptions{Ports: natPorts, Flag: flag},
			})
			dst := netip.AddrPortFrom(l.ServerAddrs[0], factPort)
			natListen(t, l, dst, serverReadClose)
			var cports []int
			var fds []int
			err := Do(l.NSPath(l.ClientNS), func() error {
				for range natPorts / 2 {
					d := natDial(dst, closeNone, 5*time.Second)
					if !d.ok() {
						return fmt.Errorf("dial: %v", d.dialResult)
					}
					cports = append(cports, d.Port)
					fds = append(fds, d.FD)
				}
				return nil
			})
			defer func() {
				for _, fd := range fds {
					unix.Close(fd)
				}
			}()
			if err != nil {
				t.Fatal(err)
			}
			// conntrack: original sport -> translated port
			same := 0
			for _, line := range strings.Split(routerCmd(t, l, "conntrack", "-L", "-p", "tcp"), "\n") {
				var sp, dp []string
				for _, f := range strings.Fields(line) {
					if v, ok := strings.CutPrefix(f, "sport="); ok {
						sp = append(sp, v)
					}
					if v, ok := strings.CutPrefix(f, "dport="); ok {
						dp = append(dp, v)
					}
				}
				if len(sp) == 2 && len(dp) == 2 && sp[0] == dp[1] {
					same++
				}
			}
			kept := flag == NATFlagNone
			if (kept && same != len(cports)) || (!kept && same > len(cports)/2) {
				t.Errorf("masquerade %q: %d of %d flows kept the client's port", flag, same, len(cports))
			}
			t.Logf("FACT nat-port-selection: masquerade %q, client ports inside the translated range: %d of %d flows kept the client's port", flag, same, len(cports))
		})
	}
}

// TestNATFactReopenOnSYN: a SYN on the same original tuple as an entry in
// TIME_WAIT (the client reuses its own port: tcp_tw_reuse=1 after
// tcp_tw_reuse_delay) re-opens the flow: conntrack replaces the TIME_WAIT
// entry by a new one (the table keeps one entry for that client port) and
// the connection goes through at once, with no drop.
func TestNATFactReopenOnSYN(t *testing.T) {
	t.Parallel()
	l, dst := natLab(t, NATOptions{}, map[string]string{"net.ipv4.tcp_tw_reuse": "1", "net.ipv4.tcp_timestamps": "1"}, serverReadClose)
	const port = 41000
	dialFrom := func() natDialResult {
		var r natDialResult
		err := Do(l.NSPath(l.ClientNS), func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
				return err
			}
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
				r.Op, r.Errno = "bind", err.(syscall.Errno)
				return nil
			}
			start := time.Now()
			// Blocking connect on a locked thread: EINTR is retried.
			for {
				err = unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
				if err != unix.EINTR {
					break
				}
			}
			r.Took = time.Since(start)
			if err != nil {
				r.Op, r.Errno = "connect", err.(syscall.Errno)
				return nil
			}
			_ = unix.Shutdown(fd, unix.SHUT_WR)
			var b [16]byte
			_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 3})
			for n, err := unix.Read(fd, b[:]); n > 0 || err == unix.EINTR; n, err = unix.Read(fd, b[:]) {
			}
			r.Port = port
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := dialFrom()
	if !first.ok() {
		t.Fatalf("first connection from port %d: %v", port, first.dialResult)
	}
	st := waitCT(t, l, func(s map[string]int) bool { return s["TIME_WAIT"] == 1 })
	if st["TIME_WAIT"] != 1 || tcpStates(t, l.NSPath(l.ClientNS))["TIME_WAIT"] != 1 {
		t.Fatalf("after the first flow: router %v, client %v; want one TIME_WAIT each", st, tcpStates(t, l.NSPath(l.ClientNS)))
	}
	time.Sleep(1200 * time.Millisecond) // past tcp_tw_reuse_delay (1 s)
	before, cb := ctStats(t, l), tcpExt(t, l.NSPath(l.ClientNS))
	second := dialFrom()
	after, ca := ctStats(t, l), tcpExt(t, l.NSPath(l.ClientNS))
	if !second.ok() || ca["TCPSynRetrans"] != cb["TCPSynRetrans"] || after["drop"] != before["drop"] {
		t.Errorf("second connection from the same port: %v after %v, SYN retransmissions +%d, router %s; want through at once",
			second.dialResult, second.Took, ca["TCPSynRetrans"]-cb["TCPSynRetrans"], statDelta(after, before))
	}
	entries := 0
	for _, line := range strings.Split(routerCmd(t, l, "conntrack", "-L", "-p", "tcp", "--orig-port-src", strconv.Itoa(port)), "\n") {
		if strings.HasPrefix(line, "tcp") {
			entries++
		}
	}
	final := waitCT(t, l, func(s map[string]int) bool { return s["TIME_WAIT"] == 1 })
	if entries != 1 {
		t.Errorf("conntrack entries for client port %d: %d, want 1 (the TIME_WAIT entry re-opened, not a second one)", port, entries)
	}
	t.Logf("FACT nat-reopen: a second flow from client port %d, %.1f s after the first (tcp_tw_reuse=1): %v in %v, SYN retransmissions +%d; conntrack entries for that port %d, router %v; %s",
		port, 1.2, second.dialResult, second.Took.Round(time.Millisecond), ca["TCPSynRetrans"]-cb["TCPSynRetrans"], entries, final, statDelta(after, before))
}
