package sampler

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/internal/testservers"
)

var nsCounter atomic.Int64

// needRoot skips tests that create network namespaces when not root, or
// fails them when LOADCAP_REQUIRE_SERVERS=1 forbids skipping.
func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		testservers.Unavailable(tb, "needs root to create network namespaces")
	}
}

// newTestNetNS creates a network namespace named loadcap-test-PID-N with lo
// up and deletes it, by its name, when the test ends.
func newTestNetNS(tb testing.TB) string {
	tb.Helper()
	needRoot(tb)
	name := fmt.Sprintf("loadcap-test-%d-%d", os.Getpid(), nsCounter.Add(1))
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

// withNetNS runs fn on a thread inside the namespace.
func withNetNS(tb testing.TB, ns string, fn func() error) {
	tb.Helper()
	fd, err := openNetNS(ns)
	if err != nil {
		tb.Fatal(err)
	}
	defer unix.Close(fd)
	if err := inNetNS(fd, fn); err != nil {
		tb.Fatal(err)
	}
}

// setSysctls writes sysctls (dotted keys) inside the namespace.
func setSysctls(tb testing.TB, ns string, kv map[string]string) {
	tb.Helper()
	withNetNS(tb, ns, func() error {
		for k, v := range kv {
			path := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
				return fmt.Errorf("set %s: %w", k, err)
			}
		}
		return nil
	})
}

// sockets holds what makeSockets created.
type sockets struct {
	fds       []int
	listeners []netip.AddrPort
}

func (s *sockets) close() {
	for _, fd := range s.fds {
		unix.Close(fd)
	}
	s.fds = nil
}

// makeSockets creates, inside ns, one loopback listener per port of ports
// and, spread over them, timeWait client sockets in TIME_WAIT (the client
// closes first, the server reads EOF and closes) and established pairs of
// ESTABLISHED sockets (client and server side). Blocking syscalls on loopback
// complete the handshake and the close synchronously. Every loop is bounded
// by its count and by the deadline.
func makeSockets(tb testing.TB, ns string, ports []uint16, timeWait, established int, deadline time.Duration) *sockets {
	tb.Helper()
	s := &sockets{}
	tb.Cleanup(s.close)
	end := time.Now().Add(deadline)
	withNetNS(tb, ns, func() error {
		var lfds []int
		for _, p := range ports {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("socket: %w", err)
			}
			s.fds = append(s.fds, fd)
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
			s.listeners = append(s.listeners, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), p))
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
			s.fds = append(s.fds, c, sv)
		}
		return nil
	})
	return s
}

// ssStates counts `ss -tan` lines per state inside ns, with an optional ss
// filter expression.
func ssStates(tb testing.TB, ns string, filter ...string) StateCounts {
	tb.Helper()
	args := append([]string{"netns", "exec", ns, "ss", "-tanH"}, filter...)
	out, err := exec.Command("ip", args...).Output()
	if err != nil {
		tb.Fatalf("ss: %v", err)
	}
	names := map[string]State{
		"ESTAB": Established, "SYN-SENT": SynSent, "SYN-RECV": SynRecv,
		"FIN-WAIT-1": FinWait1, "FIN-WAIT-2": FinWait2, "TIME-WAIT": TimeWait,
		"UNCONN": Close, "CLOSE-WAIT": CloseWait, "LAST-ACK": LastAck,
		"LISTEN": Listen, "CLOSING": Closing,
	}
	var c StateCounts
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		st, ok := names[f[0]]
		if !ok {
			tb.Fatalf("ss: unknown state %q", f[0])
		}
		c[st]++
	}
	return c
}
