package lab

// Firewall lab tests: each creates its own lab with a 3 s firewall idle
// timeout, opens one TCP connection from the client namespace to a listener
// in the server namespace (both through Do) and checks what the router's
// connection tracking does to it. Every wait is bounded; the tests run in
// parallel and take about 11 s together.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/internal/testservers"
)

const (
	fwIdle = 3 * time.Second // the firewall's idle timeout in these tests
	fwPort = 5432
)

// requireFirewall skips (or, with LOADCAP_REQUIRE_SERVERS=1, fails) when the
// firewall lab cannot run here.
func requireFirewall(t *testing.T) {
	t.Helper()
	strict := testservers.Required()
	skip := func(why string) {
		t.Helper()
		if strict {
			t.Fatalf("%s (LOADCAP_REQUIRE_SERVERS=1: not skipping)", why)
		}
		t.Skip(why)
	}
	if !Privileged() {
		skip("firewall lab tests need root or CAP_NET_ADMIN+CAP_SYS_ADMIN")
	}
	for cmd, pkg := range map[string]string{"ip": "iproute2", "nft": "nftables", "conntrack": "conntrack"} {
		if _, err := exec.LookPath(cmd); err != nil {
			skip(fmt.Sprintf("firewall lab tests need %s (Debian package %s)", cmd, pkg))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := firewallAvailable(ctx); err != nil {
		skip(err.Error())
	}
}

// newFirewallLab creates a firewall lab removed at the end of the test.
func newFirewallLab(t *testing.T, o Options) *Lab {
	t.Helper()
	requireFirewall(t)
	if o.FirewallIdle == 0 {
		o.FirewallIdle = fwIdle
	}
	return newLab(t, o)
}

// fwServer is a listener in the server namespace that records what its
// connections receive.
type fwServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	got   []byte
	conns []*net.TCPConn
}

func fwListen(t *testing.T, l *Lab, addr netip.AddrPort) *fwServer {
	t.Helper()
	s := &fwServer{ln: serverListener(t, l, addr)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c.(*net.TCPConn))
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				_ = c.SetReadDeadline(time.Now().Add(40 * time.Second)) // bound
				b := make([]byte, 4096)
				for {
					n, err := c.Read(b)
					s.mu.Lock()
					s.got = append(s.got, b[:n]...)
					s.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.SetLinger(0)
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *fwServer) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.got)
}

// conn returns the server side of the first accepted connection.
func (s *fwServer) conn(t *testing.T) *net.TCPConn {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) == 0 {
		t.Fatal("server accepted no connection")
	}
	return s.conns[0]
}

// waitReceived waits up to limit until the server has received want, and
// returns how long it took.
func (s *fwServer) waitReceived(t *testing.T, want string, limit time.Duration) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if s.received() == want {
			return time.Since(start), true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start), s.received() == want
}

// dialOpts are the client socket's options.
type dialOpts struct {
	keepIdle    time.Duration // 0: SO_KEEPALIVE off
	userTimeout time.Duration // 0: TCP_USER_TIMEOUT not set
}

// fwDial connects from the client namespace, sends "hello" and waits for
// the server to get it.
func fwDial(t *testing.T, l *Lab, srv *fwServer, dst netip.AddrPort, o dialOpts) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 3 * time.Second, KeepAlive: -1}
	if o.keepIdle > 0 {
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: o.keepIdle, Interval: time.Second, Count: 5}
	}
	if o.userTimeout > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(o.userTimeout.Milliseconds()))
			})
			return errors.Join(err, serr)
		}
	}
	var c net.Conn
	err := Do(l.NSPath(l.ClientNS), func() error {
		var err error
		c, err = d.Dial("tcp4", dst.String())
		return err
	})
	if err != nil {
		t.Fatalf("dial %v from the client namespace: %v", dst, err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatalf("first write: %v", err)
	}
	if _, ok := srv.waitReceived(t, "hello", 2*time.Second); !ok {
		t.Fatalf("server received %q, want hello", srv.received())
	}
	return c.(*net.TCPConn)
}

func localPort(c net.Conn) int { return c.LocalAddr().(*net.TCPAddr).Port }

func tcpInfo(t *testing.T, c *net.TCPConn) *unix.TCPInfo {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatalf("getsockopt TCP_INFO: %v", ierr)
	}
	return info
}

// tracked reports whether the router's conntrack table has the flow from
// the client port, using the conntrack command inside the router namespace.
func tracked(t *testing.T, l *Lab, port int) bool {
	t.Helper()
	cmd := l.Command(l.RouterNS, "conntrack", "-L", "-p", "tcp", "--sport", strconv.Itoa(port))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("conntrack -L in the router: %v", err)
	}
	return strings.Contains(string(out), "sport="+strconv.Itoa(port)+" ")
}

func counts(t *testing.T, l *Lab) FirewallCounters {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := l.FirewallCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// packet is one IPv4 packet seen on the client's veth.
type packet struct {
	at       time.Time
	incoming bool
	proto    int
	src, dst netip.Addr
	sport    int
	dport    int
	flags    byte // TCP flags
	payload  int  // TCP payload bytes
}

// capture records the IPv4 packets on the client's veth (both directions)
// with an AF_PACKET socket opened inside the client namespace.
type capture struct {
	fd   int
	mu   sync.Mutex
	pkts []packet
	stop chan struct{}
	done chan struct{}
}

func startCapture(t *testing.T, l *Lab) *capture {
	t.Helper()
	c := &capture{stop: make(chan struct{}), done: make(chan struct{})}
	// ETH_P_ALL: a socket bound to one protocol does not see outgoing packets.
	proto := int(htons(unix.ETH_P_ALL))
	err := Do(l.NSPath(l.ClientNS), func() error {
		ifi, err := net.InterfaceByName(l.ClientLink)
		if err != nil {
			return err
		}
		c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("open packet socket: %w", err)
		}
		if err := unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(c.fd)
			return fmt.Errorf("bind packet socket: %w", err)
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", l.ClientLink, err)
	}
	go c.run(time.Now().Add(40 * time.Second))
	t.Cleanup(c.Stop)
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *capture) run(deadline time.Time) {
	defer close(c.done)
	defer unix.Close(c.fd)
	b := make([]byte, 2048)
	for time.Now().Before(deadline) {
		select {
		case <-c.stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(c.fd, b, 0)
		if err != nil {
			continue // EAGAIN on the receive timeout, EINTR
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Protocol != htons(unix.ETH_P_IP) || n < 20 || b[0]>>4 != 4 {
			continue
		}
		p := packet{
			at:       time.Now(),
			incoming: ll.Pkttype != unix.PACKET_OUTGOING,
			proto:    int(b[9]),
			src:      netip.AddrFrom4([4]byte(b[12:16])),
			dst:      netip.AddrFrom4([4]byte(b[16:20])),
		}
		ihl := int(b[0]&0x0f) * 4
		if p.proto == unix.IPPROTO_TCP && n >= ihl+20 {
			tcp := b[ihl:n]
			p.sport = int(binary.BigEndian.Uint16(tcp[0:2]))
			p.dport = int(binary.BigEndian.Uint16(tcp[2:4]))
			p.flags = tcp[13]
			total := int(binary.BigEndian.Uint16(b[2:4]))
			p.payload = total - ihl - int(tcp[12]>>4)*4
		}
		c.mu.Lock()
		c.pkts = append(c.pkts, p)
		c.mu.Unlock()
	}
}

// Stop ends the capture and waits for its goroutine (at most 1 s).
func (c *capture) Stop() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	select {
	case <-c.done:
	case <-time.After(time.Second):
	}
}

func (c *capture) packets() []packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]packet(nil), c.pkts...)
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// checkDead checks a connection whose firewall entry has expired: a write
// is accepted locally, then retransmitted for settle without any answer
// (no ACK, no RST, no ICMP reaches the client), the server never gets the
// data, and both sockets stay ESTABLISHED. It returns the retransmission
// times after the write.
func checkDead(t *testing.T, l *Lab, c *net.TCPConn, srv *fwServer, capt *capture, settle time.Duration) []time.Duration {
	t.Helper()
	port := localPort(c)
	if tracked(t, l, port) {
		t.Errorf("flow from port %d still in the router's conntrack table after the idle period", port)
	}
	before := counts(t, l)
	start := time.Now()
	if _, err := c.Write([]byte("after-idle")); err != nil {
		t.Fatalf("write after idle: %v (want it accepted locally)", err)
	}
	time.Sleep(settle)
	info := tcpInfo(t, c)
	after := counts(t, l)
	capt.Stop()

	if got := srv.received(); got != "hello" {
		t.Errorf("server received %q, want only hello: the data went through", got)
	}
	if info.State != unix.BPF_TCP_ESTABLISHED {
		t.Errorf("client socket state %d %v after the write, want ESTABLISHED (a RST would have closed it)", info.State, settle)
	}
	if info.Unacked == 0 || info.Total_retrans < 2 {
		t.Errorf("client socket: unacked %d, total_retrans %d: want the write unacknowledged and retransmitted", info.Unacked, info.Total_retrans)
	}
	if si := tcpInfo(t, srv.conn(t)); si.State != unix.BPF_TCP_ESTABLISHED {
		t.Errorf("server socket state %d, want ESTABLISHED (nothing reached it)", si.State)
	}
	var retrans []time.Duration
	var incoming []packet
	for _, p := range capt.packets() {
		switch {
		case p.incoming:
			incoming = append(incoming, p)
		case p.proto == unix.IPPROTO_TCP && p.sport == port && p.payload > 0 && !p.at.Before(start):
			retrans = append(retrans, p.at.Sub(start).Round(time.Millisecond))
		}
	}
	for _, p := range incoming {
		what := fmt.Sprintf("proto %d", p.proto)
		if p.proto == unix.IPPROTO_TCP {
			what = fmt.Sprintf("tcp %d->%d flags %#x", p.sport, p.dport, p.flags)
			if p.flags&tcpRST != 0 {
				what = "RST " + what
			}
		}
		t.Errorf("client received a packet from %v after the flow was forgotten: %s", p.src, what)
	}
	if len(retrans) < 3 {
		t.Errorf("client sent the data %d times in %v, want the first send and retransmissions", len(retrans), settle)
	}
	dropped := after.Invalid - before.Invalid
	if dropped != uint64(len(retrans)) || after.NewOther != before.NewOther || after.Established != before.Established {
		t.Errorf("firewall counters %+v -> %+v: want every one of the %d segments dropped as invalid", before, after, len(retrans))
	}
	t.Logf("dead flow: %d segments sent in %v (at %v), all dropped as ct state invalid; 0 packets back; retransmits %d, backoff %d, rto %v",
		len(retrans), settle, retrans, info.Total_retrans, info.Backoff, time.Duration(info.Rto)*time.Microsecond)
	return retrans
}

func TestFirewallOptions(t *testing.T) {
	for _, d := range []time.Duration{-time.Second, 1500 * time.Millisecond, time.Millisecond, MaxFirewallIdle + time.Second} {
		o := Options{FirewallIdle: d}
		if err := o.validate(); err == nil {
			t.Errorf("validate(FirewallIdle: %v): want an error", d)
		}
	}
	for _, d := range []time.Duration{0, time.Second, 30 * time.Minute, MaxFirewallIdle} {
		o := Options{FirewallIdle: d}
		if err := o.validate(); err != nil {
			t.Errorf("validate(FirewallIdle: %v): %v", d, err)
		}
	}
	id := "ab12cd34"
	lc, ls := LinkNames(id)
	rc, rs := RouterLinkNames(id)
	seen := map[string]bool{}
	for _, n := range []string{lc, ls, rc, rs} {
		if len(n) > 15 || seen[n] || !linkNameRe.MatchString(n) {
			t.Errorf("link name %q: want distinct names of at most 15 bytes matching %v", n, linkNameRe)
		}
		seen[n] = true
	}
	if r := RouterName(id); r != "loadcap-ab12cd34-fw" || !nsNameRe.MatchString(r) {
		t.Errorf("RouterName = %q", r)
	}
	gc, gs, srv := FirewallAddrs(2)
	if gc.String() != "198.18.0.254" || gs.String() != "198.18.1.254" ||
		len(srv) != 2 || srv[0].String() != "198.18.1.2" || srv[1].String() != "198.18.1.3" {
		t.Errorf("FirewallAddrs(2) = %v, %v, %v", gc, gs, srv)
	}
	_, _, srv = FirewallAddrs(MaxTargets)
	bench := netip.MustParsePrefix(ServerSubnet)
	if last := srv[len(srv)-1]; !bench.Contains(last) || last == gs {
		t.Errorf("last server address %v", last)
	}
	err := &unavailableError{errors.New("lab: find nft command (install nftables): not found")}
	if !errors.Is(err, ErrFirewallUnavailable) || err.Error() != "lab: find nft command (install nftables): not found" {
		t.Errorf("unavailable error: %v", err)
	}
}

// netfilterHost snapshots the host's netfilter sysctls and ip_forward.
func netfilterHost(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir("/proc/sys/net/netfilter")
	if err != nil {
		t.Fatalf("read host netfilter sysctls: %v", err)
	}
	for _, e := range ents {
		if e.IsDir() || e.Name() == "nf_conntrack_count" { // count moves with host traffic
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc/sys/net/netfilter", e.Name())); err == nil {
			out[e.Name()] = strings.TrimSpace(string(b))
		}
	}
	for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/all/forwarding"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = strings.TrimSpace(string(b))
	}
	return out
}

func TestFirewallTopology(t *testing.T) {
	t.Parallel()
	requireFirewall(t)
	before := netfilterHost(t)
	l := newFirewallLab(t, Options{Targets: 2, Ports: 100})
	during := netfilterHost(t)

	if l.RouterNS != RouterName(l.ID) || l.FirewallIdle != fwIdle {
		t.Errorf("RouterNS %q, FirewallIdle %v", l.RouterNS, l.FirewallIdle)
	}
	if l.ClientAddr.String() != "198.18.0.1" || len(l.ServerAddrs) != 2 || l.ServerAddrs[0].String() != "198.18.1.2" {
		t.Errorf("addresses: client %v, servers %v", l.ClientAddr, l.ServerAddrs)
	}
	if l.PortRange != [2]int{40000, 40099} {
		t.Errorf("PortRange = %v", l.PortRange)
	}
	want := map[string]string{
		"net.ipv4.ip_forward":                                "1",
		"net.netfilter.nf_conntrack_tcp_loose":               "0",
		"net.netfilter.nf_conntrack_tcp_be_liberal":          "0",
		"net.netfilter.nf_conntrack_tcp_timeout_established": "3",
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	for _, ns := range []string{l.RouterNS, l.ClientNS, l.ServerNS} {
		got, err := Sysctls(l.NSPath(ns), keys)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if ns == l.RouterNS && (got[k] != v || l.RouterApplied[k] != v) {
				t.Errorf("router %s = %q (applied %q), want %s", k, got[k], l.RouterApplied[k], v)
			}
			if ns != l.RouterNS && k == "net.ipv4.ip_forward" && got[k] != "0" {
				t.Errorf("%s %s = %q, want 0: only the router forwards", ns, k, got[k])
			}
		}
	}
	for k, v := range before {
		if during[k] != v {
			t.Errorf("host %s changed by the firewall lab: %q -> %q", k, v, during[k])
		}
	}
	// Routes through the router, and the ruleset in the router only.
	out, err := l.Command(l.ClientNS, "ip", "-4", "route", "show", ServerSubnet).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "via "+l.RouterClientAddr.String()) {
		t.Errorf("client route to %s: %q, %v", ServerSubnet, out, err)
	}
	out, err = l.Command(l.RouterNS, "nft", "list", "ruleset").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ct state invalid") {
		t.Errorf("router ruleset: %q, %v", out, err)
	}
	if out, err := l.Command(l.ClientNS, "nft", "list", "ruleset").CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("client ruleset: %q, %v: want empty", out, err)
	}
	// Both targets answer through the router, from the client address, and
	// each connection is one tracked flow.
	for _, a := range l.ServerAddrs {
		dst := netip.AddrPortFrom(a, fwPort)
		srv := fwListen(t, l, dst)
		c := fwDial(t, l, srv, dst, dialOpts{})
		if !strings.HasPrefix(c.LocalAddr().String(), l.ClientAddr.String()+":") {
			t.Errorf("local address %v", c.LocalAddr())
		}
		if p := localPort(c); p < 40000 || p > 40099 {
			t.Errorf("local port %d outside the lab's range", p)
		}
		if !tracked(t, l, localPort(c)) {
			t.Errorf("flow to %v not in the router's conntrack table", dst)
		}
		if r := srv.conn(t).RemoteAddr().String(); !strings.HasPrefix(r, l.ClientAddr.String()+":") {
			t.Errorf("server sees the client as %s: want no NAT", r)
		}
		c.SetLinger(0)
		c.Close()
	}
	if c := counts(t, l); c.NewSYN != 2 || c.Established == 0 || c.Dropped() != 0 {
		t.Errorf("firewall counters %+v: want 2 SYNs accepted, nothing dropped", c)
	}
	left, err := Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, lo := range left {
		if lo.RunID == l.ID {
			found[lo.Name] = lo.Live && lo.OwnerPID == os.Getpid()
		}
	}
	if len(found) != 3 || !found[l.RouterNS] || !found[l.ClientNS] || !found[l.ServerNS] {
		t.Errorf("Leftovers for the live lab = %v, want its three namespaces, live", found)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, l.ID)
	after := netfilterHost(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("host %s changed after the firewall lab: %q -> %q", k, v, after[k])
		}
	}
}

// TestFirewallIdleTimeout runs the idle-flow scenarios at the same time,
// each in its own lab: they mostly wait, and run as subtests called from
// goroutines they are not held back by -parallel (GOMAXPROCS), so the whole
// test takes as long as the longest scenario (about 10 s).
func TestFirewallIdleTimeout(t *testing.T) {
	t.Parallel()
	requireFirewall(t)
	scenarios := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"idle-dies-silently", fwIdleFlowDiesSilently},
		{"busy-survives", fwBusyFlowSurvives},
		{"keepalive-1s-survives", fwKeepaliveBelowTimeoutSurvives},
		{"keepalive-10s-dies", fwKeepaliveAboveTimeoutDies},
		{"server-keepalive-1s-survives", fwServerKeepaliveSurvives},
		{"user-timeout-2s", fwUserTimeout},
	}
	var wg sync.WaitGroup
	for _, sc := range scenarios {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(sc.name, sc.fn)
		}()
	}
	wg.Wait()
}

// An idle flow outlives its conntrack entry: the next write is silently
// dropped, retransmitted, never answered.
func fwIdleFlowDiesSilently(t *testing.T) {
	l := newFirewallLab(t, Options{})
	dst := netip.AddrPortFrom(l.ServerAddrs[0], fwPort)
	srv := fwListen(t, l, dst)
	c := fwDial(t, l, srv, dst, dialOpts{})
	if !tracked(t, l, localPort(c)) {
		t.Fatal("new flow not tracked by the router")
	}
	time.Sleep(2 * fwIdle) // idle 6 s
	capt := startCapture(t, l)
	checkDead(t, l, c, srv, capt, 4*time.Second)
}

// A flow with a write every second keeps its entry fresh.
func fwBusyFlowSurvives(t *testing.T) {
	l := newFirewallLab(t, Options{})
	dst := netip.AddrPortFrom(l.ServerAddrs[0], fwPort)
	srv := fwListen(t, l, dst)
	c := fwDial(t, l, srv, dst, dialOpts{})
	want := "hello"
	var worst time.Duration
	for i := range 8 {
		time.Sleep(time.Second)
		msg := fmt.Sprintf("w%d", i)
		start := time.Now()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		want += msg
		_, ok := srv.waitReceived(t, want, time.Second)
		took := time.Since(start)
		if !ok {
			t.Fatalf("write %d after %d s not received within 1 s (server has %q)", i, i+1, srv.received())
		}
		worst = max(worst, took)
	}
	if !tracked(t, l, localPort(c)) {
		t.Error("busy flow not tracked after 8 s")
	}
	if fc := counts(t, l); fc.Dropped() != 0 {
		t.Errorf("firewall dropped packets of a busy flow: %+v", fc)
	}
	t.Logf("busy flow: 8 writes 1 s apart over 8 s (timeout %v), all delivered, slowest %v", fwIdle, worst)
}

// idleSegments counts the segments without payload the client sent and
// received on the flow from port before t0: keepalive probes and their ACKs.
func idleSegments(capt *capture, port int, t0 time.Time) (out, in int) {
	for _, p := range capt.packets() {
		if p.proto != unix.IPPROTO_TCP || p.at.After(t0) || p.payload > 0 || p.flags&(tcpSYN|tcpFIN|tcpRST) != 0 {
			continue
		}
		if !p.incoming && p.sport == port {
			out++
		}
		if p.incoming && p.dport == port {
			in++
		}
	}
	return out, in
}

// checkAlive idles a connection for 8 s and checks that a write after it
// is delivered, and that the firewall dropped nothing. It returns the
// segments without payload sent and received while idle.
func checkAlive(t *testing.T, l *Lab, c *net.TCPConn, srv *fwServer) (out, in int, took time.Duration) {
	t.Helper()
	capt := startCapture(t, l)
	port := localPort(c)
	time.Sleep(8 * time.Second)
	if !tracked(t, l, port) {
		t.Error("flow not tracked after 8 s idle")
	}
	start := time.Now()
	if _, err := c.Write([]byte("after-idle")); err != nil {
		t.Fatalf("write after idle: %v", err)
	}
	_, ok := srv.waitReceived(t, "helloafter-idle", 2*time.Second)
	took = time.Since(start)
	capt.Stop()
	if !ok {
		t.Fatalf("write after 8 s idle not received (server has %q)", srv.received())
	}
	if fc := counts(t, l); fc.Dropped() != 0 {
		t.Errorf("firewall dropped packets of a kept-alive flow: %+v", fc)
	}
	out, in = idleSegments(capt, port, start)
	return out, in, took
}

// TCP keepalive probes below the firewall's timeout refresh its entry.
func fwKeepaliveBelowTimeoutSurvives(t *testing.T) {
	l := newFirewallLab(t, Options{})
	dst := netip.AddrPortFrom(l.ServerAddrs[0], fwPort)
	srv := fwListen(t, l, dst)
	c := fwDial(t, l, srv, dst, dialOpts{keepIdle: time.Second})
	probes, acks, took := checkAlive(t, l, c, srv)
	if probes < 5 || acks < 5 {
		t.Errorf("%d keepalive probes sent, %d answered in 8 s idle: want about 7", probes, acks)
	}
	t.Logf("client keepalive idle 1 s, interval 1 s: %d probes sent and %d answered in 8 s idle; write after idle delivered in %v",
		probes, acks, took.Round(time.Microsecond))
}

// Keepalive on the server's socket (PostgreSQL's tcp_keepalives_idle) below
// the firewall's timeout keeps the client's connection alive just as well.
func fwServerKeepaliveSurvives(t *testing.T) {
	l := newFirewallLab(t, Options{})
	dst := netip.AddrPortFrom(l.ServerAddrs[0], fwPort)
	srv := fwListen(t, l, dst)
	c := fwDial(t, l, srv, dst, dialOpts{})
	ka := net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 5}
	if err := srv.conn(t).SetKeepAliveConfig(ka); err != nil {
		t.Fatal(err)
	}
	answers, probes, took := checkAlive(t, l, c, srv)
	if probes < 5 || answers < 5 {
		t.Errorf("client got %d server keepalive probes and answered %d in 8 s idle: want about 7", probes, answers)
	}
	t.Logf("server keepalive idle 1 s, interval 1 s: client received %d probes and answered %d in 8 s idle; write after idle delivered in %v",
		probes, answers, took.Round(time.Microsecond))
}

// TCP keepalive above the firewall's timeout comes too late.
func fwKeepaliveAboveTimeoutDies(t *testing.T) {
	l := newFirewallLab(t, Options{})
	dst := netip.AddrPortFrom(l.ServerAddrs[0], fwPort)
	srv := fwListen(t, l, dst)
	c := fwDial(t, l, srv, dst, dialOpts{keepIdle: 10 * time.Second})
	time.Sleep(2 * fwIdle)
	capt := startCapture(t, l)
	checkDead(t, l, c, srv, capt, 3*time.Second)
}

// TCP_USER_TIMEOUT bounds how long the dead flow's unacknowledged write is
// retransmitted: the socket fails with ETIMEDOUT.
func fwUserTimeout(t *testing.T) {
	l := newFirewallLab(t, Options{})
	dst := netip.AddrPortFrom(l.ServerAddrs[0], fwPort)
	srv := fwListen(t, l, dst)
	const userTimeout = 2 * time.Second
	c := fwDial(t, l, srv, dst, dialOpts{userTimeout: userTimeout})
	time.Sleep(2 * fwIdle)
	port := localPort(c)
	if tracked(t, l, port) {
		t.Error("flow still tracked after the idle period")
	}
	capt := startCapture(t, l)
	start := time.Now()
	if _, err := c.Write([]byte("after-idle")); err != nil {
		t.Fatalf("write after idle: %v (want it accepted locally)", err)
	}
	// What a client waiting for the reply sees.
	_ = c.SetReadDeadline(start.Add(8 * time.Second))
	_, err := c.Read(make([]byte, 16))
	took := time.Since(start)
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("read after the write on a dead flow: %v after %v, want ETIMEDOUT", err, took)
	}
	if took < userTimeout-100*time.Millisecond || took > 4*time.Second {
		t.Errorf("ETIMEDOUT after %v, want about TCP_USER_TIMEOUT (%v)", took, userTimeout)
	}
	_, werr := c.Write([]byte("again"))
	if werr == nil {
		t.Error("write on the timed-out socket succeeded")
	}
	time.Sleep(300 * time.Millisecond) // anything the client sends on giving up
	capt.Stop()
	if got := srv.received(); got != "hello" {
		t.Errorf("server received %q, want only hello", got)
	}
	if si := tcpInfo(t, srv.conn(t)); si.State != unix.BPF_TCP_ESTABLISHED {
		t.Errorf("server socket state %d, want ESTABLISHED: the server never learns", si.State)
	}
	var sent []time.Duration
	rsts := 0
	for _, p := range capt.packets() {
		if p.proto != unix.IPPROTO_TCP || p.at.Before(start) {
			continue
		}
		if p.incoming {
			t.Errorf("client received a packet from %v on a dead flow: flags %#x", p.src, p.flags)
		}
		if !p.incoming && p.sport == port && p.payload > 0 {
			sent = append(sent, p.at.Sub(start).Round(time.Millisecond))
		}
		if !p.incoming && p.sport == port && p.flags&tcpRST != 0 {
			rsts++
		}
	}
	t.Logf("TCP_USER_TIMEOUT %v: read returned %v %v after the write (data sent at %v, %d RST sent by the client on giving up); next write: %v",
		userTimeout, err, took.Round(time.Millisecond), sent, rsts, werr)
}

// `loadcap lab cleanup` removes a router namespace left by a dead run.
func TestCleanupRouterLeftover(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	id := NewRunID()
	fw := RouterName(id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ip(ctx, "netns", "add", fw); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ip(context.Background(), "netns", "delete", fw) })
	left, err := Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, lo := range left {
		if lo.Name == fw {
			listed = lo.Kind == "netns" && lo.RunID == id && !lo.Live
		}
	}
	if !listed {
		t.Fatalf("router namespace %s not listed as a leftover: %+v", fw, left)
	}
	removed, err := Cleanup()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range removed {
		found = found || n == fw
	}
	if _, serr := os.Stat(filepath.Join(NetnsDir, fw)); !found || !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("Cleanup removed %v; %s still there: %v", removed, fw, serr)
	}
}

// Without nft, Create fails before making anything, with an error that
// matches ErrFirewallUnavailable and says what to install. Not parallel:
// it changes PATH for the whole process.
func TestFirewallUnavailable(t *testing.T) {
	requireRoot(t)
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs ip (iproute2)")
	}
	dir := t.TempDir()
	if err := os.Symlink(ipPath, filepath.Join(dir, "ip")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	id := NewRunID()
	_, err = Create(context.Background(), Options{RunID: id, FirewallIdle: fwIdle})
	if !errors.Is(err, ErrFirewallUnavailable) || !strings.Contains(err.Error(), "install nftables") {
		t.Fatalf("Create with a firewall and no nft: %v", err)
	}
	t.Logf("error: %v", err)
	assertGone(t, id)
}
