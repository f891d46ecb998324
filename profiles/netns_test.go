package profiles

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/internal/testservers"
)

var netnsSeq atomic.Int64

// testNetns is a network namespace made for one test, removed in t.Cleanup.
type testNetns struct {
	t    *testing.T
	name string
}

// newTestNetns creates a network namespace named loadcap-test-<pid>-<n> with
// lo up, or skips the test when that is not possible (not root, no ip), or
// fails it then when LOADCAP_REQUIRE_SERVERS=1 forbids skipping.
func newTestNetns(t *testing.T) *testNetns {
	t.Helper()
	if os.Geteuid() != 0 {
		testservers.Unavailable(t, "needs root to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testservers.Unavailable(t, "needs the ip command")
	}
	name := fmt.Sprintf("loadcap-test-%d-%d", os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		testservers.Unavailable(t, fmt.Sprintf("ip netns add %s: %v: %s", name, err, out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	n := &testNetns{t: t, name: name}
	n.ip("link", "set", "lo", "up")
	return n
}

func (n *testNetns) ip(args ...string) {
	n.t.Helper()
	args = append([]string{"-n", n.name}, args...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// do runs f on an OS thread moved into the namespace. Sockets made there
// belong to the namespace, and so does /proc/sys/net as that thread sees it
// (/proc/thread-self/net, /proc/sys/net open per current task).
func (n *testNetns) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it exits with the goroutine
		// instead of returning to the pool in the wrong namespace.
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+n.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", n.name, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// sysctl runs "sysctl" inside the namespace with args, returning its output.
func (n *testNetns) sysctl(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.name, "sysctl"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (n *testNetns) set(kv ...string) {
	n.t.Helper()
	for _, s := range kv {
		if out, err := n.sysctl("-qw", s); err != nil {
			n.t.Fatalf("sysctl -w %s in %s: %v: %s", s, n.name, err, out)
		}
	}
}

// sockets: raw syscalls so that every socket is made on the namespaced thread.

func listenTCP(port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind listener %d: %w", port, err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen %d: %w", port, err)
	}
	return fd, nil
}

// dial connects to 127.0.0.1:port, binding to 0.0.0.0:0 first when bind is
// set (what Go does with Dialer.LocalAddr). It returns the fd and local port.
func dial(port int, bind bool) (int, int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("socket: %w", err)
	}
	if bind {
		if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
			unix.Close(fd)
			return -1, 0, fmt.Errorf("bind: %w", err)
		}
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("connect: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("getsockname: %w", err)
	}
	return fd, sa.(*unix.SockaddrInet4).Port, nil
}

// fill dials until an error and returns the local ports obtained and the
// error that stopped it; fds are closed with cleanup.
func fill(t *testing.T, port int, bind bool, most int, fds *[]int) ([]int, error) {
	var ports []int
	for range most {
		fd, p, err := dial(port, bind)
		if err != nil {
			return ports, err
		}
		*fds = append(*fds, fd)
		ports = append(ports, p)
	}
	return ports, nil
}

// closeFirst makes one connection to the listener and closes it from the
// side given (client or server) first, leaving TIME_WAIT on that side.
func closeFirst(lfd, port int, bind, clientFirst bool) (int, error) {
	cfd, p, err := dial(port, bind)
	if err != nil {
		return 0, err
	}
	sfd, _, err := unix.Accept(lfd)
	if err != nil {
		unix.Close(cfd)
		return 0, fmt.Errorf("accept: %w", err)
	}
	first, second := cfd, sfd
	if !clientFirst {
		first, second = sfd, cfd
	}
	unix.Close(first)
	// Wait for the FIN to arrive (read returns 0) before closing the other side.
	buf := make([]byte, 1)
	_, _ = unix.Read(second, buf)
	unix.Close(second)
	return p, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func isErrno(err error, e unix.Errno) bool { return errors.Is(err, e) }
