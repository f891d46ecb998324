package lab

// Kernel facts as tests: each creates its own lab with a small port range,
// drives plain sockets created inside the client namespace (through Do)
// against listeners in the server namespace, and checks one behaviour the
// capacity model relies on. Every loop is bounded in count and in time.

import (
	"bufio"
	"errors"
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

const (
	factPorts = 200  // client port range of every fact test
	factPort  = 8086 // server port
	// twLen is TCP_TIMEWAIT_LEN, fixed in the kernel source.
	twLen = 60 * time.Second
)

// server is a listener in the server namespace.
type server struct {
	ln net.Listener
	wg sync.WaitGroup
}

// serverListener listens on addr in the lab's server namespace.
func serverListener(t *testing.T, l *Lab, addr netip.AddrPort) net.Listener {
	t.Helper()
	var ln net.Listener
	err := Do(l.NSPath(l.ServerNS), func() error {
		var err error
		ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen in server namespace: %v", err)
	}
	return ln
}

// listen opens a listener on addr:port in the server namespace. With
// closeFirst the server closes every connection as soon as it accepts it
// (TIME_WAIT on the server); otherwise it reads to EOF and closes after the
// client did (TIME_WAIT on the client).
func listen(t *testing.T, l *Lab, addr netip.Addr, port int, closeFirst bool) *server {
	t.Helper()
	s := &server{ln: serverListener(t, l, netip.AddrPortFrom(addr, uint16(port)))}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			if closeFirst {
				c.Close()
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// Close stops the listener and waits for its connections to end.
func (s *server) Close() {
	s.ln.Close()
	s.wg.Wait()
}

// Dial modes of the client sockets (the same as the client profiles').
const (
	modeConnect    = "connect"      // plain connect()
	modeBind       = "bind"         // bind(0.0.0.0:0) then connect()
	modeBindNoPort = "bind-no-port" // IP_BIND_ADDRESS_NO_PORT, bind, connect
)

// dialResult is one connection attempt; Op names the syscall that failed.
type dialResult struct {
	Port  int
	Op    string
	Errno syscall.Errno
}

func (r dialResult) ok() bool { return r.Op == "" }

func (r dialResult) String() string {
	if r.ok() {
		return "ok"
	}
	return r.Op + ": " + errnoName(r.Errno)
}

func errnoName(e syscall.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return e.Error()
}

// dialOnce opens a TCP connection to dst from the calling thread's namespace
// and closes it: first, when serverFirst is false (TIME_WAIT on the client);
// after reading the server's FIN otherwise. It must run inside Do. The
// socket is non-blocking and waited on with poll: a blocking connect would
// return EINTR when the Go runtime preempts the thread with SIGURG.
func dialOnce(dst netip.AddrPort, mode string, serverFirst bool) dialResult {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return dialResult{Op: "socket", Errno: err.(syscall.Errno)}
	}
	defer unix.Close(fd)
	switch mode {
	case modeBindNoPort:
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
			return dialResult{Op: "setsockopt", Errno: err.(syscall.Errno)}
		}
		fallthrough
	case modeBind:
		if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
			return dialResult{Op: "bind", Errno: err.(syscall.Errno)}
		}
	}
	// The local port is chosen synchronously: EADDRNOTAVAIL comes from here.
	err = unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
	if err != nil && err != unix.EINPROGRESS {
		return dialResult{Op: "connect", Errno: err.(syscall.Errno)}
	}
	if err == unix.EINPROGRESS {
		if !waitFD(fd, unix.POLLOUT, 3*time.Second) {
			return dialResult{Op: "connect", Errno: unix.ETIMEDOUT}
		}
		if soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
			return dialResult{Op: "connect", Errno: syscall.Errno(soerr)}
		}
	}
	var r dialResult
	if sa, err := unix.Getsockname(fd); err == nil {
		r.Port = sa.(*unix.SockaddrInet4).Port
	}
	if serverFirst {
		var b [16]byte
		for range 4 { // until EOF
			if !waitFD(fd, unix.POLLIN, 3*time.Second) {
				break
			}
			if n, err := unix.Read(fd, b[:]); n <= 0 && err != unix.EAGAIN {
				break
			}
		}
	}
	return r
}

// waitFD polls fd for events, retrying on EINTR, until timeout.
func waitFD(fd int, events int16, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(pfd, int(left.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}

// burstResult is the outcome of a burst of connections.
type burstResult struct {
	OK         int            // connections made before the first failure
	PerDst     map[string]int // of which per destination
	Fail       dialResult     // the first failure (zero if none)
	FirstClose time.Time      // when the first connection was closed
	LastClose  time.Time      // when the last successful one was closed
	Ports      map[int]bool   // distinct local ports used
	Settles    int            // port errors that a retry after settling cured
}

// transient are the states in which a closing socket holds its port only
// until the peer's next segment arrives (FIN_WAIT2 includes the orphaned
// FIN_WAIT2 time-wait sockets, which become TIME_WAIT on the peer's FIN).
var transient = []string{"SYN_SENT", "FIN_WAIT1", "FIN_WAIT2", "CLOSING", "LAST_ACK"}

// settle waits (at most 2 s) until no socket of the calling thread's
// namespace is in a transient state, and a further 20 ms for segments in
// flight. It must run inside Do.
func settle() {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		st, err := readStates()
		if err != nil {
			return
		}
		n := 0
		for _, s := range transient {
			n += st[s]
		}
		if n == 0 {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
}

// burst opens and closes connections in the client namespace, round-robin
// over dsts, as fast as it can, until the first failure or max connections
// (or a 20 s bound). A port error while closing sockets are still waiting
// for the server's FIN or ACK (the server goroutines lag on a busy machine)
// is not exhaustion: the burst waits for them to settle and retries once.
func burst(t *testing.T, l *Lab, dsts []netip.AddrPort, mode string, serverFirst bool, max int) burstResult {
	t.Helper()
	return burstIn(t, l.NSPath(l.ClientNS), dsts, mode, serverFirst, max)
}

// burstIn is burst from the client namespace at nsPath.
func burstIn(t *testing.T, nsPath string, dsts []netip.AddrPort, mode string, serverFirst bool, max int) burstResult {
	t.Helper()
	r := burstResult{PerDst: map[string]int{}, Ports: map[int]bool{}}
	deadline := time.Now().Add(20 * time.Second)
	err := Do(nsPath, func() error {
		for i := 0; i < max && time.Now().Before(deadline); i++ {
			dst := dsts[i%len(dsts)]
			d := dialOnce(dst, mode, serverFirst)
			if !d.ok() && (d.Errno == unix.EADDRNOTAVAIL || d.Errno == unix.EADDRINUSE) {
				settle()
				if d = dialOnce(dst, mode, serverFirst); d.ok() {
					r.Settles++
				}
			}
			if !d.ok() {
				r.Fail = d
				return nil
			}
			now := time.Now()
			if r.OK == 0 {
				r.FirstClose = now
			}
			r.LastClose = now
			r.OK++
			r.PerDst[dst.Addr().String()]++
			r.Ports[d.Port] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// probe makes one connection attempt from the client namespace.
func probe(t *testing.T, l *Lab, dst netip.AddrPort, mode string) dialResult {
	t.Helper()
	var d dialResult
	if err := Do(l.NSPath(l.ClientNS), func() error { d = dialOnce(dst, mode, false); return nil }); err != nil {
		t.Fatal(err)
	}
	return d
}

var stateNames = map[string]string{
	"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
	"05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
	"09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING", "0C": "NEW_SYN_RECV",
}

// readStates counts the TCP sockets by state in the calling thread's
// namespace, from /proc/thread-self/net/tcp{,6} (/proc/net would show the
// main thread's namespace). It must run inside Do.
func readStates() (map[string]int, error) {
	out := map[string]int{}
	for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if fs := strings.Fields(line); len(fs) > 3 {
				out[stateNames[fs[3]]]++
			}
		}
	}
	return out, nil
}

// tcpStates counts the TCP sockets by state inside a namespace.
func tcpStates(t *testing.T, nsPath string) map[string]int {
	t.Helper()
	var out map[string]int
	err := Do(nsPath, func() error {
		var err error
		out, err = readStates()
		return err
	})
	if err != nil {
		t.Fatalf("count sockets: %v", err)
	}
	return out
}

// counters reads the "Tcp:" (file snmp) or "TcpExt:" (file netstat)
// counters of /proc/net inside a namespace.
func counters(t *testing.T, nsPath, file, prefix string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := Do(nsPath, func() error {
		f, err := os.Open("/proc/thread-self/net/" + file)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		var header []string
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) == 0 || fs[0] != prefix {
				continue
			}
			if header == nil {
				header = fs
				continue
			}
			for i := 1; i < len(fs) && i < len(header); i++ {
				out[header[i]], _ = strconv.ParseInt(fs[i], 10, 64)
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatalf("read %s counters: %v", prefix, err)
	}
	return out
}

// tcpExt reads the TcpExt counters of /proc/net/netstat inside a namespace.
func tcpExt(t *testing.T, nsPath string) map[string]int64 {
	return counters(t, nsPath, "netstat", "TcpExt:")
}

// outRsts is the number of RSTs the server namespace has sent. Each can
// assassinate one client TIME_WAIT socket (RFC 1337; tcp_rfc1337=0): on a
// multi-CPU machine the server's ACK of the client's FIN and its own FIN can
// be sent from two CPUs and arrive reordered; the client's TIME_WAIT answers
// the stale ACK with an ACK, the server (its socket gone) answers that with
// a RST from the listener, and the RST kills the TIME_WAIT socket, freeing
// its port 60 s early.
func outRsts(t *testing.T, l *Lab) int {
	return int(counters(t, l.NSPath(l.ServerNS), "snmp", "Tcp:")["OutRsts"])
}

// waitStates polls tcpStates until cond holds or timeout passes, and
// returns the last counts.
func waitStates(t *testing.T, nsPath string, timeout time.Duration, cond func(map[string]int) bool) map[string]int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := tcpStates(t, nsPath)
		if cond(s) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sysctlInt(t *testing.T, l *Lab, key string) int {
	t.Helper()
	v, err := Sysctls(l.NSPath(l.ClientNS), []string{key})
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(v[key])
	if err != nil {
		t.Fatalf("sysctl %s = %q in the client namespace: %v", key, v[key], err)
	}
	return n
}

// ssTimeWait counts TIME_WAIT sockets with ss run inside the namespace, as
// a cross-check of tcpStates; -1 if ss is not installed.
func ssTimeWait(t *testing.T, l *Lab, ns string) int {
	t.Helper()
	if _, err := exec.LookPath("ss"); err != nil {
		return -1
	}
	out, err := l.Command(ns, "ss", "-Htan", "state", "time-wait").Output()
	if err != nil {
		t.Fatalf("ss in %s: %v", ns, err)
	}
	return strings.Count(string(out), "\n")
}

// checkBudget checks a burst's count against the expected budget. The
// count may exceed it by at most the RSTs the server sent (see outRsts).
func checkBudget(t *testing.T, what string, b burstResult, want, rsts int, op string, errno syscall.Errno) {
	t.Helper()
	if b.OK < want || b.OK > want+rsts || b.Fail.Op != op || b.Fail.Errno != errno {
		t.Errorf("%s: %d connections then %v, want %d (up to +%d for TIME_WAIT assassinated by server RSTs) then %s: %s",
			what, b.OK, b.Fail, want, rsts, op, errnoName(errno))
	}
}

// holdResult is what exhaustAndRecover measured.
type holdResult struct {
	Budget   int
	Fail     dialResult
	TimeWait int
	Rsts     int // RSTs sent by the server during the burst
	Settles  int
	Recovery time.Duration // first close to first successful connect
}

// exhaustAndRecover exhausts the client's port range with client-closed
// connections, then probes once a second until a port comes back (at most
// 75 s after the first close).
func exhaustAndRecover(t *testing.T, sysctls map[string]string) holdResult {
	l := newLab(t, Options{Ports: factPorts, Sysctls: sysctls})
	dst := netip.AddrPortFrom(l.ServerAddrs[0], factPort)
	listen(t, l, dst.Addr(), factPort, false)

	inUse := len(tcpStates(t, l.NSPath(l.ClientNS))) // nothing yet: no ports in use
	b := burst(t, l, []netip.AddrPort{dst}, modeConnect, false, 3*factPorts)
	h := holdResult{Budget: b.OK, Fail: b.Fail, Rsts: outRsts(t, l), Settles: b.Settles}
	checkBudget(t, "budget", b, factPorts-inUse, h.Rsts, "connect", unix.EADDRNOTAVAIL)
	// At exhaustion every port of the range is held in TIME_WAIT.
	st := waitStates(t, l.NSPath(l.ClientNS), 5*time.Second, func(s map[string]int) bool { return s["TIME_WAIT"] == factPorts-inUse })
	h.TimeWait = st["TIME_WAIT"]
	if h.TimeWait < factPorts-inUse-h.Rsts || h.TimeWait > factPorts-inUse {
		t.Errorf("TIME_WAIT in client = %d, want the range size %d (states %v)", h.TimeWait, factPorts-inUse, st)
	}
	if n := ssTimeWait(t, l, l.ClientNS); n >= 0 && n != h.TimeWait {
		t.Errorf("ss counts %d TIME_WAIT, /proc/thread-self/net/tcp %d", n, h.TimeWait)
	}
	for time.Since(b.FirstClose) < 75*time.Second {
		time.Sleep(time.Second)
		d := probe(t, l, dst, modeConnect)
		if d.ok() {
			h.Recovery = time.Since(b.FirstClose)
			break
		}
		if d.Errno != unix.EADDRNOTAVAIL {
			t.Fatalf("probe: %v, want EADDRNOTAVAIL or success", d)
		}
	}
	if h.Recovery == 0 {
		t.Fatalf("no port came back within 75 s of the first close")
	}
	if h.Recovery < 55*time.Second {
		t.Errorf("a port came back after %v, before TIME_WAIT (%v) ended", h.Recovery, twLen)
	}
	return h
}

// TestFactA_ClientClosesFirst: with the kernel's defaults (tcp_tw_reuse=2 is
// loopback only; the lab's veth is not loopback) connect() fails with
// EADDRNOTAVAIL after exactly the port budget, every one of those ports is
// in TIME_WAIT, and they come back after TCP_TIMEWAIT_LEN (60 s).
func TestFactA_ClientClosesFirst(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	h := exhaustAndRecover(t, nil)
	t.Logf("FACT a: linux-default, %d ports: budget %d, then %v; TIME_WAIT %d; first port back %.1f s after the first close; server RSTs %d, settle retries %d",
		factPorts, h.Budget, h.Fail, h.TimeWait, h.Recovery.Seconds(), h.Rsts, h.Settles)
}

// TestFactC_FinTimeoutChangesNothing: tcp_fin_timeout bounds FIN_WAIT_2 only;
// the budget and the TIME_WAIT hold are those of the defaults.
func TestFactC_FinTimeoutChangesNothing(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	h := exhaustAndRecover(t, map[string]string{"net.ipv4.tcp_fin_timeout": "5"})
	t.Logf("FACT c: tcp_fin_timeout=5, %d ports: budget %d, then %v; TIME_WAIT %d; first port back %.1f s after the first close; server RSTs %d, settle retries %d",
		factPorts, h.Budget, h.Fail, h.TimeWait, h.Recovery.Seconds(), h.Rsts, h.Settles)
}

// TestFactB_TwReuse: tcp_tw_reuse=1 with timestamps lets connect() take over
// TIME_WAIT ports older than tcp_tw_reuse_delay, so the sustainable rate is
// about budget / delay.
func TestFactB_TwReuse(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	l := newLab(t, Options{Ports: factPorts, Sysctls: map[string]string{
		"net.ipv4.tcp_tw_reuse":   "1",
		"net.ipv4.tcp_timestamps": "1",
	}})
	dst := netip.AddrPortFrom(l.ServerAddrs[0], factPort)
	listen(t, l, dst.Addr(), factPort, false)
	delay := time.Second // kernels before tcp_tw_reuse_delay: 1 s granularity
	if _, ok := l.Applied["net.ipv4.tcp_tw_reuse"]; !ok {
		t.Fatalf("tcp_tw_reuse not applied: %v", l.Skipped)
	}
	if v, err := Sysctls(l.NSPath(l.ClientNS), []string{"net.ipv4.tcp_tw_reuse_delay"}); err == nil && v["net.ipv4.tcp_tw_reuse_delay"] != "" {
		ms, _ := strconv.Atoi(v["net.ipv4.tcp_tw_reuse_delay"])
		delay = time.Duration(ms) * time.Millisecond
	}

	b := burst(t, l, []netip.AddrPort{dst}, modeConnect, false, 3*factPorts)
	burstTook := b.LastClose.Sub(b.FirstClose)
	if burstTook > delay/2 {
		t.Skipf("burst of %d connections took %v, too slow to measure a %v reuse delay", b.OK, burstTook, delay)
	}
	checkBudget(t, "burst", b, factPorts, outRsts(t, l), "connect", unix.EADDRNOTAVAIL)
	// Probe every 10 ms until a port is reusable.
	var back time.Duration
	for time.Since(b.FirstClose) < 5*delay+time.Second {
		d := probe(t, l, dst, modeConnect)
		if d.ok() {
			back = time.Since(b.FirstClose)
			break
		}
		if d.Errno != unix.EADDRNOTAVAIL {
			t.Fatalf("probe: %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if back == 0 {
		t.Fatalf("no TIME_WAIT port reused within %v", 5*delay+time.Second)
	}
	if back < delay-50*time.Millisecond || back > delay+delay/2+200*time.Millisecond {
		t.Errorf("first reuse %v after the first close, want about tcp_tw_reuse_delay (%v)", back, delay)
	}

	// Sustained: connect as fast as ports allow for 3 s; the rate settles at
	// about budget / delay.
	var ok, fails int
	const window = 3 * time.Second
	err := Do(l.NSPath(l.ClientNS), func() error {
		end := time.Now().Add(window)
		for i := 0; i < 50000 && time.Now().Before(end); i++ {
			d := dialOnce(dst, modeConnect, false)
			switch {
			case d.ok():
				ok++
			case d.Errno == unix.EADDRNOTAVAIL:
				fails++
				time.Sleep(2 * time.Millisecond)
			default:
				return fmt.Errorf("dial: %v", d)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rate := float64(ok) / window.Seconds()
	want := float64(factPorts) / delay.Seconds()
	if rate < 0.8*want || rate > 1.3*want {
		t.Errorf("sustained rate %.0f conn/s, want about budget/delay = %.0f", rate, want)
	}
	t.Logf("FACT b: tcp_tw_reuse=1 timestamps=1, %d ports, tcp_tw_reuse_delay %v: burst of %d in %v then EADDRNOTAVAIL; first TIME_WAIT port reused %.3f s after the first close; sustained %.0f conn/s over %v (budget/delay = %.0f), %d EADDRNOTAVAIL retries",
		factPorts, delay, b.OK, burstTook.Round(time.Millisecond), back.Seconds(), rate, window, want, fails)
}

// TestFactB_TwReuseNeedsTimestamps: without TCP timestamps tcp_tw_reuse=1
// cannot reuse anything: EADDRNOTAVAIL persists well past the reuse delay.
func TestFactB_TwReuseNeedsTimestamps(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	l := newLab(t, Options{Ports: factPorts, Sysctls: map[string]string{
		"net.ipv4.tcp_tw_reuse":   "1",
		"net.ipv4.tcp_timestamps": "0",
	}})
	dst := netip.AddrPortFrom(l.ServerAddrs[0], factPort)
	listen(t, l, dst.Addr(), factPort, false)
	delay := time.Duration(sysctlInt(t, l, "net.ipv4.tcp_tw_reuse_delay")) * time.Millisecond

	b := burst(t, l, []netip.AddrPort{dst}, modeConnect, false, 3*factPorts)
	checkBudget(t, "burst", b, factPorts, outRsts(t, l), "connect", unix.EADDRNOTAVAIL)
	wait := 3*delay + time.Second
	probes := 0
	for time.Since(b.FirstClose) < wait {
		time.Sleep(100 * time.Millisecond)
		probes++
		if d := probe(t, l, dst, modeConnect); d.ok() || d.Errno != unix.EADDRNOTAVAIL {
			t.Fatalf("probe %.1f s after the first close: %v, want EADDRNOTAVAIL", time.Since(b.FirstClose).Seconds(), d)
		}
	}
	t.Logf("FACT b': tcp_tw_reuse=1 timestamps=0: budget %d then EADDRNOTAVAIL; still EADDRNOTAVAIL on all %d probes up to %v after the first close (reuse delay %v)",
		b.OK, probes, wait, delay)
}

// TestFactD_TwoTargets: connect() keeps one port pool per destination, so two
// targets double the budget; bind-before-connect (Go's Dialer.LocalAddr)
// shares one pool across destinations and fails in bind() with EADDRINUSE;
// IP_BIND_ADDRESS_NO_PORT restores per-destination pools.
func TestFactD_TwoTargets(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	cases := []struct {
		mode   string
		budget int
		op     string
		errno  syscall.Errno
	}{
		{modeConnect, 2 * factPorts, "connect", unix.EADDRNOTAVAIL},
		{modeBind, factPorts, "bind", unix.EADDRINUSE},
		{modeBindNoPort, 2 * factPorts, "connect", unix.EADDRNOTAVAIL},
	}
	var mu sync.Mutex
	var facts []string
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() { // a lab each, concurrently: TIME_WAIT outlives the test
			defer wg.Done()
			t.Run(c.mode, func(t *testing.T) {
				l := newLab(t, Options{Ports: factPorts, Targets: 2})
				var dsts []netip.AddrPort
				for _, a := range l.ServerAddrs {
					dsts = append(dsts, netip.AddrPortFrom(a, factPort))
					listen(t, l, a, factPort, false)
				}
				b := burst(t, l, dsts, c.mode, false, 4*factPorts)
				rsts := outRsts(t, l)
				checkBudget(t, c.mode+" to 2 targets", b, c.budget, rsts, c.op, c.errno)
				mu.Lock()
				facts = append(facts, fmt.Sprintf("%s: %d connections (per target %v, %d distinct ports) then %v; server RSTs %d",
					c.mode, b.OK, b.PerDst, len(b.Ports), b.Fail, rsts))
				mu.Unlock()
			})
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.Run("go-dialer-localaddr", func(t *testing.T) {
			// What a Go client with Dialer.LocalAddr set sees.
			l := newLab(t, Options{Ports: factPorts, Targets: 2})
			var dsts []string
			for _, a := range l.ServerAddrs {
				dsts = append(dsts, netip.AddrPortFrom(a, factPort).String())
				listen(t, l, a, factPort, false)
			}
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4zero}, Timeout: 3 * time.Second}
			var n int
			var derr error
			err := Do(l.NSPath(l.ClientNS), func() error {
				for ; n < 4*factPorts; n++ {
					c, err := d.Dial("tcp4", dsts[n%2])
					if err != nil {
						derr = err
						return nil
					}
					c.Close()
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var se *os.SyscallError
			rsts := outRsts(t, l)
			if n < factPorts || n > factPorts+rsts || !errors.Is(derr, syscall.EADDRINUSE) || !errors.As(derr, &se) || se.Syscall != "bind" {
				t.Errorf("Go dialer with LocalAddr: %d connections then %v, want %d then a bind EADDRINUSE", n, derr, factPorts)
			}
			mu.Lock()
			facts = append(facts, fmt.Sprintf("Go net.Dialer{LocalAddr: 0.0.0.0}: %d connections then %q", n, derr))
			mu.Unlock()
		})
	}()
	wg.Wait()
	for _, f := range facts {
		t.Logf("FACT d: 2 targets, %d ports, client closes: %s", factPorts, f)
	}
}

// TestFactE_ServerClosesFirst: when the server closes first, TIME_WAIT is
// held in the server namespace and the client's ports are free at once.
func TestFactE_ServerClosesFirst(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	l := newLab(t, Options{Ports: factPorts})
	dst := netip.AddrPortFrom(l.ServerAddrs[0], factPort)
	listen(t, l, dst.Addr(), factPort, true)
	const n = 3 * factPorts
	b := burst(t, l, []netip.AddrPort{dst}, modeConnect, true, n)
	if b.OK != n {
		t.Errorf("server closes first: %d connections then %v, want %d without error", b.OK, b.Fail, n)
	}
	cli := tcpStates(t, l.NSPath(l.ClientNS))
	// Each client port maps to one 4-tuple; a new SYN on a 4-tuple in
	// TIME_WAIT takes that TIME_WAIT over, so the server holds one per
	// distinct client port.
	srv := waitStates(t, l.NSPath(l.ServerNS), 5*time.Second, func(s map[string]int) bool { return s["TIME_WAIT"] == len(b.Ports) })
	if cli["TIME_WAIT"] != 0 {
		t.Errorf("TIME_WAIT in client = %d, want 0 (states %v)", cli["TIME_WAIT"], cli)
	}
	if srv["TIME_WAIT"] != len(b.Ports) {
		t.Errorf("TIME_WAIT in server = %d, want one per distinct client port (%d)", srv["TIME_WAIT"], len(b.Ports))
	}
	if n := ssTimeWait(t, l, l.ServerNS); n >= 0 && n != srv["TIME_WAIT"] {
		t.Errorf("ss counts %d TIME_WAIT in server, /proc %d", n, srv["TIME_WAIT"])
	}
	t.Logf("FACT e: server closes first, %d ports: %d connections, no error; client TIME_WAIT %d (states %v); server TIME_WAIT %d = distinct client ports used %d",
		factPorts, b.OK, cli["TIME_WAIT"], cli, srv["TIME_WAIT"], len(b.Ports))
}

// TestFactF_MaxTwBuckets: with tcp_max_tw_buckets below the load's TIME_WAIT
// count, closing sockets skip TIME_WAIT (TCPTimeWaitOverflow counts them),
// TIME_WAIT stays at the cap and the port range never runs out.
func TestFactF_MaxTwBuckets(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	const limit = 50
	l := newLab(t, Options{Ports: factPorts, Sysctls: map[string]string{
		"net.ipv4.tcp_max_tw_buckets": strconv.Itoa(limit),
	}})
	dst := netip.AddrPortFrom(l.ServerAddrs[0], factPort)
	listen(t, l, dst.Addr(), factPort, false)
	before := tcpExt(t, l.NSPath(l.ClientNS))["TCPTimeWaitOverflow"]
	const n = 3 * factPorts
	b := burst(t, l, []netip.AddrPort{dst}, modeConnect, false, n)
	if b.OK != n {
		t.Errorf("tcp_max_tw_buckets=%d: %d connections then %v, want %d without error", limit, b.OK, b.Fail, n)
	}
	st := waitStates(t, l.NSPath(l.ClientNS), 5*time.Second, func(s map[string]int) bool {
		return s["FIN_WAIT2"]+s["FIN_WAIT1"] == 0
	})
	overflow := tcpExt(t, l.NSPath(l.ClientNS))["TCPTimeWaitOverflow"] - before
	rsts := outRsts(t, l)
	if st["TIME_WAIT"] < limit-rsts || st["TIME_WAIT"] > limit {
		t.Errorf("TIME_WAIT in client = %d, want the cap %d (states %v)", st["TIME_WAIT"], limit, st)
	}
	if overflow < int64(b.OK-limit-rsts) || overflow > int64(b.OK-limit) {
		t.Errorf("TCPTimeWaitOverflow rose by %d, want %d (-%d server RSTs)", overflow, b.OK-limit, rsts)
	}
	t.Logf("FACT f: tcp_max_tw_buckets=%d, %d ports: %d connections, no error; TIME_WAIT %d; TCPTimeWaitOverflow +%d; settle retries %d",
		limit, factPorts, b.OK, st["TIME_WAIT"], overflow, b.Settles)
}
