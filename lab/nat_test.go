package lab

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNATOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{NAT: &NATOptions{}},
		{NAT: &NATOptions{Ports: 65535 - NATPortStart + 2}},
		{NAT: &NATOptions{Ports: 20, Clients: MaxNATClients + 1}},
		{NAT: &NATOptions{Ports: 20, Flag: "persistent"}},
		{NAT: &NATOptions{Ports: 20, Sysctls: map[string]string{"net/../x": "1"}}},
		{NAT: &NATOptions{Ports: 20}, FirewallIdle: time.Second},
	} {
		if err := o.validate(); err == nil {
			t.Errorf("validate(%+v): want an error", *o.NAT)
		}
	}
	o := Options{NAT: &NATOptions{Ports: 20}}
	if err := o.validate(); err != nil || o.NAT.Clients != 1 {
		t.Errorf("validate: %v, clients %d", err, o.NAT.Clients)
	}
	ns, link, rlink := NATClientNames("ab12cd34", 15)
	if ns != "loadcap-ab12cd34-cli15" || len(link) > 15 || len(rlink) > 15 || len(BridgeName("ab12cd34")) > 15 {
		t.Errorf("NATClientNames = %q, %q, %q; bridge %q: want link names of at most 15 bytes", ns, link, rlink, BridgeName("ab12cd34"))
	}
	if r := NATRules("lc-x-rs", 50000, 50019, NATFlagFullyRandom); !strings.Contains(r, `oifname "lc-x-rs" meta l4proto tcp counter masquerade to :50000-50019 fully-random`) {
		t.Errorf("NATRules: %s", r)
	}
}

// Every client of a NAT lab reaches the server only through the router:
// the server sees the router's translated address and a translated port,
// has no route back to the clients, and the masquerade rule counts the
// flows. The lab leaves nothing behind (newLab's assertGone).
func TestNATTopology(t *testing.T) {
	t.Parallel()
	l := newLab(t, Options{NAT: &NATOptions{Ports: 20, Clients: 3}})
	if len(l.ClientNSs) != 3 || l.ClientAddrs[2] != netip.MustParseAddr("198.18.0.3") || l.NATPortRange != [2]int{50000, 50019} {
		t.Fatalf("lab %+v", l)
	}
	dst := netip.AddrPortFrom(l.ServerAddrs[0], factPort)
	ln := serverListener(t, l, dst)
	defer ln.Close()
	peers := make(chan netip.AddrPort, 3)
	go func() {
		for range 3 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
			c.Close()
		}
	}()
	for i, ns := range l.ClientNSs {
		err := Do(l.NSPath(ns), func() error {
			c, err := net.DialTimeout("tcp4", dst.String(), 5*time.Second)
			if err != nil {
				return err
			}
			return c.Close()
		})
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		p := <-peers
		if p.Addr() != l.RouterServerAddr || p.Port() < 50000 || p.Port() > 50019 {
			t.Errorf("client %d seen by the server as %v, want %v:50000-50019", i, p, l.RouterServerAddr)
		}
	}
	out, err := l.Command(l.ServerNS, "ip", "route", "get", "198.18.0.1").CombinedOutput()
	if err == nil {
		t.Errorf("the server has a route to the clients: %s", out)
	}
	n, err := l.NATCounters(context.Background())
	if err != nil || n < 3 {
		t.Errorf("masquerade counter %d (%v), want at least the 3 SYNs", n, err)
	}
}

// A crashed NAT lab's extra client namespace is a leftover that Cleanup
// removes.
func TestCleanupNATClientLeftover(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	id := NewRunID()
	ns, _, _ := NATClientNames(id, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ip(ctx, "netns", "add", ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ip(context.Background(), "netns", "delete", ns) })
	left, err := Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, lo := range left {
		listed = listed || (lo.Name == ns && lo.RunID == id && !lo.Live)
	}
	if !listed {
		t.Fatalf("%s not listed as a leftover: %+v", ns, left)
	}
	if _, err := Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(NetnsDir, ns)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after Cleanup: %v", ns, err)
	}
}
