package sampler

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Under connection churn the kernel writes some lines of /proc/net/tcp twice
// (see procSeen). In a namespace of the test's own, 300 TIME_WAIT sockets
// toward 127.0.0.1:8086 stay put while another thread opens and resets
// connections to :8087 as fast as it can (bounded in count and time); every
// /proc walk must count at most 300 TIME_WAIT toward :8086, whatever the raw
// file repeats.
func TestProcWalkUnderChurnCountsOnce(t *testing.T) {
	ns := newTestNetNS(t)
	setSysctls(t, ns, map[string]string{"net.ipv4.tcp_tw_reuse": "0"})
	const stable = 300
	makeSockets(t, ns, []uint16{8086}, stable, 0, 20*time.Second)
	s, err := Open(Options{NetNS: ns, Source: SourceProc})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var stop atomic.Bool
	var churned atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		withNetNS(t, ns, func() error { return churn(&stop, &churned, 8087, 200_000, 10*time.Second) })
	}()
	defer func() { stop.Store(true); wg.Wait() }()

	a := netip.MustParseAddrPort("127.0.0.1:8086")
	var worst, rawWorst, repeated int
	for i := 0; i < 200; i++ {
		n := 0
		if err := s.Walk(StatesOf(TimeWait), func(sk *Socket) {
			if sk.Remote == a {
				n++
			}
		}); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, n)
		raw, rep := s.rawProcCount(t, a)
		rawWorst, repeated = max(rawWorst, raw), repeated+rep
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d connections churned; TIME_WAIT toward %s per walk: at most %d counted, at most %d raw lines, %d repeated lines over 200 raw reads", churned.Load(), a, worst, rawWorst, repeated)
	if churned.Load() == 0 {
		t.Fatal("no churn")
	}
	if worst > stable {
		t.Fatalf("a /proc walk counted %d TIME_WAIT toward %s, there are %d", worst, a, stable)
	}
}

// rawProcCount reads /proc/net/tcp once, with no deduplication, and returns
// the TIME_WAIT lines toward dst and how many lines repeat an earlier one.
func (s *Sampler) rawProcCount(t *testing.T, dst netip.AddrPort) (n, repeated int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.readAll(s.tcp)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[procKey]bool{}
	if err := ParseProcNetTCP(b, func(sk *Socket) {
		k := procKey{local: sk.Local, remote: sk.Remote, inode: sk.Inode}
		if seen[k] {
			repeated++
		}
		seen[k] = true
		if sk.State == TimeWait && sk.Remote == dst {
			n++
		}
	}); err != nil {
		t.Fatal(err)
	}
	return n, repeated
}

// churn opens connections to a loopback listener on port and resets them
// (SO_LINGER 0: no TIME_WAIT) until stop, max connections or d.
func churn(stop *atomic.Bool, n *atomic.Int64, port int, maxConns int64, d time.Duration) error {
	l, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(l)
	unix.SetsockoptInt(l, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	lo := [4]byte{127, 0, 0, 1}
	if err := unix.Bind(l, &unix.SockaddrInet4{Port: port, Addr: lo}); err != nil {
		return err
	}
	if err := unix.Listen(l, 128); err != nil {
		return err
	}
	end := time.Now().Add(d)
	for !stop.Load() && n.Load() < maxConns && time.Now().Before(end) {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Connect(c, &unix.SockaddrInet4{Port: port, Addr: lo}); err != nil {
			unix.Close(c)
			return err
		}
		sv, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC)
		if err != nil {
			unix.Close(c)
			return err
		}
		unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(c)
		unix.Close(sv)
		n.Add(1)
	}
	return nil
}
