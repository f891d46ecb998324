package sampler_test

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/lab"
	"github.com/loadcap/loadcap/sampler"
)

// `loadcap sample --conntrack` counts, read over ctnetlink in a test-made
// NAT router, equal `conntrack -L` counts exactly, per (translated
// address, destination) and state, and the counters equal `conntrack -S`
// and nf_conntrack_count.
func TestConntrackMatchesConntrackTool(t *testing.T) {
	if !lab.Privileged() {
		if testservers.Required() {
			t.Fatal("needs root; " + testservers.EnvRequire + "=1 forbids skipping")
		}
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("conntrack"); err != nil {
		if testservers.Required() {
			t.Fatalf("conntrack (Debian package conntrack) is missing: %v", err)
		}
		t.Skip("conntrack tool missing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Create(ctx, lab.Options{Targets: 2, Ports: 2000, NAT: &lab.NATOptions{Ports: 100, Clients: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}()
	// Server: one listener per address; it holds every connection until the
	// test ends, except those whose client closed and that it should close.
	var held []net.Conn
	var lns []net.Listener
	for _, a := range l.ServerAddrs {
		err := lab.Do(l.NSPath(l.ServerNS), func() error {
			ln, err := net.Listen("tcp4", netip.AddrPortFrom(a, 8086).String())
			lns = append(lns, ln)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	accepted := make(chan net.Conn, 200)
	for _, ln := range lns {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
	}
	var conns []net.Conn
	defer func() {
		for _, c := range append(conns, held...) {
			c.Close()
		}
		for _, ln := range lns {
			ln.Close()
		}
	}()
	dial := func(ns string, dst netip.Addr, n int) []net.Conn {
		var out []net.Conn
		err := lab.Do(l.NSPath(ns), func() error {
			for range n {
				c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(dst, 8086).String(), 5*time.Second)
				if err != nil {
					return err
				}
				out = append(out, c)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			held = append(held, <-accepted)
		}
		return out
	}
	// Client 0 -> server 0: 6 open, 4 closed by the client (server holds:
	// CLOSE_WAIT), 3 RST. Client 1 -> server 1: 5 open, 7 closed by both
	// (TIME_WAIT).
	c0 := dial(l.ClientNSs[0], l.ServerAddrs[0], 13)
	conns = append(conns, c0[:6]...)
	for _, c := range c0[6:10] {
		c.Close()
	}
	for _, c := range c0[10:] {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	c1 := dial(l.ClientNSs[1], l.ServerAddrs[1], 12)
	conns = append(conns, c1[:5]...)
	for _, c := range c1[5:] {
		c.Close()
	}
	// The server closes its ends of client 1's closed flows.
	for _, s := range held[13+5:] {
		s.Close()
	}

	ct, err := sampler.OpenConntrack(l.NSPath(l.RouterNS))
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	want := map[string]int{
		"198.18.1.2:8086 ESTABLISHED": 6, "198.18.1.2:8086 CLOSE_WAIT": 4, "198.18.1.2:8086 CLOSE": 3,
		"198.18.1.3:8086 ESTABLISHED": 5, "198.18.1.3:8086 TIME_WAIT": 7,
	}
	var snap *sampler.ConntrackSnapshot
	var tool map[string]int
	deadline := time.Now().Add(10 * time.Second)
	for {
		tool = conntrackToolCounts(t, l.RouterNS)
		if snap, err = ct.Snapshot(); err != nil {
			t.Fatal(err)
		}
		if maps.Equal(tool, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := map[string]int{}
	translated := netip.MustParseAddr("198.18.1.254")
	for _, g := range snap.Groups {
		if g.Proto != syscall.IPPROTO_TCP {
			continue
		}
		if g.Translated != translated {
			t.Errorf("group %v: translated address %v, want %v", g.Dst, g.Translated, translated)
		}
		for st, n := range g.States {
			got[g.Dst.String()+" "+st] += n
		}
	}
	if !maps.Equal(got, tool) || !maps.Equal(tool, want) {
		t.Errorf("ctnetlink %v\nconntrack -L %v\nwant %v", got, tool, want)
	}
	// Every entry (other protocols too) and the counters.
	all := strings.Count(routerOut(t, l.RouterNS, "conntrack", "-L"), "\n")
	if snap.Entries != all || snap.Count != all {
		t.Errorf("ctnetlink %d entries, nf_conntrack_count %d; conntrack -L %d", snap.Entries, snap.Count, all)
	}
	if snap.Max <= 0 {
		t.Errorf("nf_conntrack_max %d", snap.Max)
	}
	stats := map[string]int64{}
	for _, f := range strings.Fields(routerOut(t, l.RouterNS, "conntrack", "-S")) {
		if k, v, ok := strings.Cut(f, "="); ok && k != "cpu" {
			n, _ := strconv.ParseInt(v, 10, 64)
			stats[k] += n
		}
	}
	s := snap.Stats
	for k, v := range map[string]uint64{"found": s.Found, "invalid": s.Invalid, "insert": s.Insert, "insert_failed": s.InsertFailed,
		"drop": s.Drop, "early_drop": s.EarlyDrop, "error": s.Error, "search_restart": s.SearchRestart, "clash_resolve": s.ClashResolve, "chaintoolong": s.ChainTooLong} {
		if int64(v) != stats[k] {
			t.Errorf("stat %s: ctnetlink %d, conntrack -S %d", k, v, stats[k])
		}
	}
	t.Logf("ctnetlink = conntrack -L: %v; %d entries; stats %+v; nf_conntrack_max %d", got, snap.Entries, s, snap.Max)
}

func routerOut(t *testing.T, ns string, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

// conntrackToolCounts counts `conntrack -L -p tcp` entries by original
// destination ip:port and state.
func conntrackToolCounts(t *testing.T, ns string) map[string]int {
	out := map[string]int{}
	for _, line := range strings.Split(routerOut(t, ns, "conntrack", "-L", "-p", "tcp"), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "tcp" {
			continue
		}
		var dst, dport string
		for _, x := range f {
			if v, ok := strings.CutPrefix(x, "dst="); ok && dst == "" {
				dst = v
			}
			if v, ok := strings.CutPrefix(x, "dport="); ok && dport == "" {
				dport = v
			}
		}
		out[dst+":"+dport+" "+f[3]]++
	}
	return out
}
