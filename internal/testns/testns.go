// Package testns makes throw-away network namespaces with known sockets for
// tests: a namespace with lo up (removed, by its name, when the test ends),
// sysctls set inside it, loopback listeners with client sockets in
// TIME_WAIT and ESTABLISHED pairs, and `ss` counts to compare with.
package testns

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/lab"
)

var counter atomic.Int64

// NeedRoot skips tests that create network namespaces when not root, or
// fails them when LOADCAP_REQUIRE_SERVERS=1 (make test) forbids skipping.
func NeedRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		testservers.Unavailable(tb, "needs root to create network namespaces")
	}
}

// New creates a network namespace named loadcap-test-PID-N with lo up and
// deletes it, by its name, when the test ends. It returns the name.
func New(tb testing.TB) string {
	tb.Helper()
	NeedRoot(tb)
	name := fmt.Sprintf("loadcap-test-%d-%d", os.Getpid(), counter.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			tb.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		tb.Fatalf("ip -n %s link set lo up: %v: %s", name, err, out)
	}
	return name
}

// Path is the path of the namespace called name.
func Path(name string) string { return filepath.Join("/var/run/netns", name) }

// Do runs fn on a thread inside the namespace; an error fails tb.
func Do(tb testing.TB, ns string, fn func() error) {
	tb.Helper()
	if err := lab.Do(Path(ns), fn); err != nil {
		tb.Fatal(err)
	}
}

// SetSysctls writes sysctls (dotted keys) inside the namespace.
func SetSysctls(tb testing.TB, ns string, kv map[string]string) {
	tb.Helper()
	Do(tb, ns, func() error {
		for k, v := range kv {
			path := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
				return fmt.Errorf("set %s: %w", k, err)
			}
		}
		return nil
	})
}

// Sockets holds what MakeSockets created.
type Sockets struct {
	// FDs are the listeners and the ESTABLISHED sockets, closed by Close
	// (and when the test ends).
	FDs []int
	// Listeners are the listening addresses.
	Listeners []netip.AddrPort
}

// Close closes the sockets.
func (s *Sockets) Close() {
	for _, fd := range s.FDs {
		unix.Close(fd)
	}
	s.FDs = nil
}

// MakeSockets creates, inside ns, one loopback listener per port of ports
// and, spread over them, timeWait client sockets in TIME_WAIT (the client
// closes first, the server reads EOF and closes) and established pairs of
// ESTABLISHED sockets (client and server side). Blocking syscalls on
// loopback complete the handshake and the close synchronously. Every loop is
// bounded by its count and by the deadline.
func MakeSockets(tb testing.TB, ns string, ports []uint16, timeWait, established int, deadline time.Duration) *Sockets {
	tb.Helper()
	s := &Sockets{}
	tb.Cleanup(s.Close)
	end := time.Now().Add(deadline)
	Do(tb, ns, func() error {
		var lfds []int
		for _, p := range ports {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("socket: %w", err)
			}
			s.FDs = append(s.FDs, fd)
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
				return fmt.Errorf("setsockopt: %w", err)
			}
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(p), Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				return fmt.Errorf("bind %d: %w", p, err)
			}
			if err := unix.Listen(fd, 4096); err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			lfds = append(lfds, fd)
			s.Listeners = append(s.Listeners, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), p))
		}
		var buf [16]byte
		pair := func(i int) (client, server int, err error) {
			if time.Now().After(end) {
				return -1, -1, fmt.Errorf("make sockets: deadline %s passed after %d", deadline, i)
			}
			client, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return -1, -1, fmt.Errorf("socket: %w", err)
			}
			p := ports[i%len(ports)]
			if err := unix.Connect(client, &unix.SockaddrInet4{Port: int(p), Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				unix.Close(client)
				return -1, -1, fmt.Errorf("connect %d (socket %d): %w", p, i, err)
			}
			server, _, err = unix.Accept4(lfds[i%len(ports)], unix.SOCK_CLOEXEC)
			if err != nil {
				unix.Close(client)
				return -1, -1, fmt.Errorf("accept: %w", err)
			}
			return client, server, nil
		}
		for i := 0; i < timeWait; i++ {
			c, sv, err := pair(i)
			if err != nil {
				return err
			}
			unix.Close(c) // the client closes first: FIN_WAIT2, then TIME_WAIT
			if n, err := unix.Read(sv, buf[:]); n != 0 || err != nil {
				unix.Close(sv)
				return fmt.Errorf("server read: want EOF, got %d bytes, %v", n, err)
			}
			unix.Close(sv)
		}
		for i := 0; i < established; i++ {
			c, sv, err := pair(i)
			if err != nil {
				return err
			}
			s.FDs = append(s.FDs, c, sv)
		}
		return nil
	})
	return s
}

// ssNames maps ss's state names to netstat's (sampler.State.String).
var ssNames = map[string]string{
	"ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV",
	"FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT",
	"UNCONN": "CLOSE", "CLOSE-WAIT": "CLOSE_WAIT", "LAST-ACK": "LAST_ACK",
	"LISTEN": "LISTEN", "CLOSING": "CLOSING",
}

// SSStates counts `ss -tan` lines per state (netstat names: TIME_WAIT,
// ESTABLISHED, ...) inside ns, with an optional ss filter expression.
func SSStates(tb testing.TB, ns string, filter ...string) map[string]int {
	tb.Helper()
	args := append([]string{"netns", "exec", ns, "ss", "-tanH"}, filter...)
	out, err := exec.Command("ip", args...).Output()
	if err != nil {
		tb.Fatalf("ss: %v", err)
	}
	c := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		st, ok := ssNames[f[0]]
		if !ok {
			tb.Fatalf("ss: unknown state %q", f[0])
		}
		c[st]++
	}
	return c
}

// CPUMeter measures the CPU time (user and system, of this process and of
// its waited-for children) of a benchmark, which other load on the machine
// disturbs less than wall time.
type CPUMeter struct{ self, children unix.Rusage }

// StartCPU starts a CPUMeter.
func StartCPU() *CPUMeter {
	m := &CPUMeter{}
	unix.Getrusage(unix.RUSAGE_SELF, &m.self)
	unix.Getrusage(unix.RUSAGE_CHILDREN, &m.children)
	return m
}

// Report reports usr-µs/op and sys-µs/op since StartCPU, per b.N.
func (m *CPUMeter) Report(b *testing.B) (usr, sys float64) {
	var self, children unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &self)
	unix.Getrusage(unix.RUSAGE_CHILDREN, &children)
	d := func(a, b unix.Timeval) float64 { return float64(b.Nano()-a.Nano()) / 1e3 }
	n := float64(b.N)
	usr = (d(m.self.Utime, self.Utime) + d(m.children.Utime, children.Utime)) / n
	sys = (d(m.self.Stime, self.Stime) + d(m.children.Stime, children.Stime)) / n
	b.ReportMetric(usr, "usr-µs/op")
	b.ReportMetric(sys, "sys-µs/op")
	return usr, sys
}
