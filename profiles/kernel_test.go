package profiles

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests check, in a network namespace made for the test, the kernel
// facts the capacity model relies on. They use port ranges of a few ports so
// that exhaustion takes a handful of sockets and well under two seconds.

// TestNetnsSysctlsPerNamespace: the port-budget sysctls exist per network
// namespace and are writable there without touching the host; tcp_tw_recycle
// does not exist (removed in 4.12).
func TestNetnsSysctlsPerNamespace(t *testing.T) {
	ns := newTestNetns(t)
	host, err := ReadSysctls("/proc/sys", []string{"net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_tw_reuse"})
	if err != nil {
		t.Fatal(err)
	}
	ns.set("net.ipv4.tcp_fin_timeout=17", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=40000 40009",
		"net.ipv4.tcp_tw_reuse_delay=123", "net.ipv4.tcp_max_tw_buckets=7", "net.ipv4.tcp_timestamps=0",
		"net.ipv4.tcp_keepalive_time=600", "net.ipv4.ip_local_reserved_ports=40001")
	out, err := ns.sysctl("-n", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_tw_reuse_delay", "net.ipv4.tcp_max_tw_buckets")
	if err != nil || strings.Join(strings.Fields(out), " ") != "17 1 123 7" {
		t.Fatalf("namespace values = %q, %v; want 17 1 123 7", out, err)
	}
	after, err := ReadSysctls("/proc/sys", []string{"net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_tw_reuse"})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range host {
		if after[k] != v {
			t.Errorf("host %s changed from %s to %s: not per-namespace", k, v, after[k])
		}
	}
	if _, err := ns.sysctl("-n", "net.ipv4.tcp_tw_recycle"); err == nil {
		t.Errorf("net.ipv4.tcp_tw_recycle exists in the namespace; expected absent since 4.12")
	}
	if _, err := os.Stat("/proc/sys/net/ipv4/tcp_tw_recycle"); err == nil {
		t.Errorf("/proc/sys/net/ipv4/tcp_tw_recycle exists on the host; expected absent since 4.12")
	}
	// The linter's table of which keys are per namespace must agree.
	for _, key := range []string{"net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_tw_reuse_delay",
		"net.ipv4.tcp_max_tw_buckets", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_timestamps",
		"net.ipv4.tcp_keepalive_time", "net.ipv4.ip_local_reserved_ports"} {
		if ki, ok := knownKeys[key]; !ok || !ki.perNetns {
			t.Errorf("knownKeys[%s]: want perNetns", key)
		}
	}
}

// TestNetnsPortPools: connect() keeps one pool per destination (EADDRNOTAVAIL
// when it runs out); bind before connect shares one pool across destinations
// (EADDRINUSE); an odd-sized range loses one port; reserved ports are skipped.
func TestNetnsPortPools(t *testing.T) {
	ns := newTestNetns(t)
	ns.set("net.ipv4.ip_local_port_range=40000 40003")
	err := ns.do(func() error {
		var fds []int
		defer func() { closeAll(fds) }()
		for _, p := range []int{5001, 5002} {
			lfd, err := listenTCP(p)
			if err != nil {
				return err
			}
			fds = append(fds, lfd)
		}
		// connect(): 4 ports toward 5001 and 4 more toward 5002.
		a, errA := fill(t, 5001, false, 10, &fds)
		b, errB := fill(t, 5002, false, 10, &fds)
		if len(a) != 4 || len(b) != 4 || !isErrno(errA, unix.EADDRNOTAVAIL) || !isErrno(errB, unix.EADDRNOTAVAIL) {
			t.Errorf("connect: got %v (%v) and %v (%v); want 4 ports per destination, then EADDRNOTAVAIL", a, errA, b, errB)
		}
		t.Logf("connect() picked ports in order %v (even/odd halves)", a)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// bind(0.0.0.0:0) then connect: one pool of 4 for both destinations. A
	// fresh range: the ports above now sit in orphaned FIN_WAIT_2 (closed by
	// the client, never by the server), which tcp_fin_timeout bounds.
	ns.set("net.ipv4.ip_local_port_range=40010 40013")
	if err := ns.do(func() error {
		var fds []int
		defer func() { closeAll(fds) }()
		for _, p := range []int{5011, 5012} {
			lfd, err := listenTCP(p)
			if err != nil {
				return err
			}
			fds = append(fds, lfd)
		}
		a, errA := fill(t, 5011, true, 3, &fds)
		b, errB := fill(t, 5012, true, 10, &fds)
		if len(a)+len(b) != 4 || errA != nil || !isErrno(errB, unix.EADDRINUSE) {
			t.Errorf("bind: got %v (%v) and %v (%v); want 4 ports in all, then EADDRINUSE", a, errA, b, errB)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Odd-sized range: the kernel scans an even count, so the top port is lost.
	ns.set("net.ipv4.ip_local_port_range=40000 40002")
	if err := ns.do(func() error {
		var fds []int
		defer func() { closeAll(fds) }()
		lfd, err := listenTCP(5003)
		if err != nil {
			return err
		}
		fds = append(fds, lfd)
		got, err := fill(t, 5003, false, 10, &fds)
		t.Logf("range 40000-40002 (3 ports): connect() got %v, then %v", got, err)
		if len(got) != 2 {
			t.Errorf("odd range: connect() got %d ports %v; the model assumes 2 (size rounded down to even)", len(got), got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Reserved ports are never picked.
	ns.set("net.ipv4.ip_local_port_range=40000 40003", "net.ipv4.ip_local_reserved_ports=40001")
	if err := ns.do(func() error {
		var fds []int
		defer func() { closeAll(fds) }()
		lfd, err := listenTCP(5004)
		if err != nil {
			return err
		}
		fds = append(fds, lfd)
		got, err := fill(t, 5004, false, 10, &fds)
		if len(got) != 3 || !isErrno(err, unix.EADDRNOTAVAIL) {
			t.Errorf("reserved 40001: got %v (%v); want 3 ports", got, err)
		}
		for _, p := range got {
			if p == 40001 {
				t.Errorf("reserved port 40001 was picked")
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestNetnsTimeWait: the client that closes first holds TIME_WAIT and its
// ports run out; tcp_tw_reuse lets connect() take them after
// tcp_tw_reuse_delay but never lets bind(0) take them; when the server closes
// first the client's ports are free at once; tcp_max_tw_buckets overflow skips
// TIME_WAIT and counts TCPTimeWaitOverflow.
func TestNetnsTimeWait(t *testing.T) {
	ns := newTestNetns(t)
	ns.set("net.ipv4.ip_local_port_range=40000 40001", "net.ipv4.tcp_tw_reuse=0", "net.ipv4.tcp_tw_reuse_delay=100")
	var lfd int
	run := func(f func() error) {
		t.Helper()
		if err := ns.do(f); err != nil {
			t.Fatal(err)
		}
	}
	run(func() (err error) { lfd, err = listenTCP(5001); return err })
	t.Cleanup(func() { unix.Close(lfd) })

	// Client closes first: both ports go to TIME_WAIT, the next connect fails.
	run(func() error {
		for range 2 {
			if _, err := closeFirst(lfd, 5001, false, true); err != nil {
				return err
			}
		}
		if _, _, err := dial(5001, false); !isErrno(err, unix.EADDRNOTAVAIL) {
			t.Errorf("connect with both ports in TIME_WAIT, tw_reuse=0: %v; want EADDRNOTAVAIL", err)
		}
		return nil
	})
	// tcp_tw_reuse=1 with a 60 s delay: not yet.
	ns.set("net.ipv4.tcp_tw_reuse=1", "net.ipv4.tcp_tw_reuse_delay=60000")
	run(func() error {
		if fd, _, err := dial(5001, false); !isErrno(err, unix.EADDRNOTAVAIL) {
			if err == nil {
				unix.Close(fd)
			}
			t.Errorf("connect with TIME_WAIT ports younger than tcp_tw_reuse_delay=60000: %v; want EADDRNOTAVAIL", err)
		}
		return nil
	})
	// After the delay (100 ms here) connect() reuses them, bind(0) still
	// cannot.
	ns.set("net.ipv4.tcp_tw_reuse_delay=100")
	time.Sleep(250 * time.Millisecond)
	run(func() error {
		if fd, _, err := dial(5001, true); !isErrno(err, unix.EADDRINUSE) {
			if err == nil {
				unix.Close(fd)
			}
			t.Errorf("bind+connect with ports in TIME_WAIT, tw_reuse=1: %v; want EADDRINUSE (bind never reuses TIME_WAIT)", err)
		}
		fd, p, err := dial(5001, false)
		if err != nil {
			t.Errorf("connect with TIME_WAIT ports older than tcp_tw_reuse_delay, tw_reuse=1: %v; want success", err)
			return nil
		}
		t.Logf("tw_reuse=1 reused TIME_WAIT port %d", p)
		unix.Close(fd)
		return nil
	})

	// tcp_tw_reuse=1 without timestamps: TIME_WAIT sockets carry no
	// timestamp, so connect() never reuses them.
	ns0 := newTestNetns(t)
	ns0.set("net.ipv4.ip_local_port_range=40000 40001", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.tcp_tw_reuse_delay=100", "net.ipv4.tcp_timestamps=0")
	if err := ns0.do(func() error {
		l, err := listenTCP(5001)
		if err != nil {
			return err
		}
		defer unix.Close(l)
		for range 2 {
			if _, err := closeFirst(l, 5001, false, true); err != nil {
				return err
			}
		}
		time.Sleep(250 * time.Millisecond)
		if fd, _, err := dial(5001, false); !isErrno(err, unix.EADDRNOTAVAIL) {
			if err == nil {
				unix.Close(fd)
			}
			t.Errorf("connect with TIME_WAIT ports, tw_reuse=1, timestamps=0: %v; want EADDRNOTAVAIL", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Server closes first: no client TIME_WAIT, so ports never run out.
	ns2 := newTestNetns(t)
	ns2.set("net.ipv4.ip_local_port_range=40000 40001", "net.ipv4.tcp_tw_reuse=0")
	if err := ns2.do(func() error {
		l, err := listenTCP(5001)
		if err != nil {
			return err
		}
		defer unix.Close(l)
		for i := range 6 {
			if _, err := closeFirst(l, 5001, false, false); err != nil {
				t.Errorf("server-closes connection %d with a 2-port range: %v; want success", i, err)
				return nil
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// tcp_max_tw_buckets=1: the second TIME_WAIT overflows, so a port stays free.
	ns3 := newTestNetns(t)
	ns3.set("net.ipv4.ip_local_port_range=40000 40001", "net.ipv4.tcp_tw_reuse=0", "net.ipv4.tcp_max_tw_buckets=1")
	var overflow int
	if err := ns3.do(func() error {
		l, err := listenTCP(5001)
		if err != nil {
			return err
		}
		defer unix.Close(l)
		for i := range 4 {
			if _, err := closeFirst(l, 5001, false, true); err != nil {
				t.Errorf("client-closes connection %d with tcp_max_tw_buckets=1: %v; want success (overflow)", i, err)
				return nil
			}
		}
		overflow, err = netstatCounter("TcpExt", "TCPTimeWaitOverflow")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if overflow < 1 {
		t.Errorf("TCPTimeWaitOverflow = %d in the namespace; want >= 1", overflow)
	}
}

// netstatCounter reads one counter from /proc/thread-self/net/netstat (the
// calling thread's namespace).
func netstatCounter(group, name string) (int, error) {
	b, err := os.ReadFile("/proc/thread-self/net/netstat")
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		h, v := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(h) == 0 || h[0] != group+":" || len(h) != len(v) {
			continue
		}
		for j := range h {
			if h[j] == name {
				return strconv.Atoi(v[j])
			}
		}
	}
	return 0, os.ErrNotExist
}
