package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// The NAT lab (Options.NAT): a router namespace that source-translates the
// connections of one or more client namespaces to its own server-side
// address, with a small translated port range, like a Kubernetes node's
// SNAT or a NAT gateway:
//
//	loadcap-<id>-cli   client 0, lc-<id>-c,  198.18.0.1/24 ─┐
//	loadcap-<id>-cli1  client 1, lc-<id>-c1, 198.18.0.2/24 ─┤ bridge lc-<id>-br 198.18.0.254/24
//	...                                                      │ in the router loadcap-<id>-fw
//	loadcap-<id>-srv   server,   lc-<id>-s,  198.18.1.2/24 ──── lc-<id>-rs 198.18.1.254/24
//
// The router forwards and masquerades (nftables, NATRules) every flow that
// leaves towards the server to 198.18.1.254, ports NATPortStart onwards. The
// server namespace has no route to the clients' subnet: every packet it
// answers goes to the translated address, so a flow the router does not
// translate cannot complete. The router's sysctls (NATOptions.Sysctls:
// conntrack timeouts, nf_conntrack_max ...) are written inside the router
// namespace only.
const (
	// NATPortStart is the first translated port.
	NATPortStart = 50000
	// MaxNATClients is the most client namespaces behind one router.
	MaxNATClients = 16
	// NATTable is the nftables table (family ip) of the NAT router.
	NATTable = "loadcap_nat"
)

// NAT port selection flags of the masquerade rule (nft(8) "masquerade ...
// random / fully-random").
const (
	NATFlagNone        = ""
	NATFlagRandom      = "random"
	NATFlagFullyRandom = "fully-random"
)

// NATOptions describe the translator of a NAT lab.
type NATOptions struct {
	// Ports is the size of the translated port range, from NATPortStart
	// (1 .. 65535-NATPortStart+1).
	Ports int
	// Clients is the number of client namespaces behind the router
	// (default 1, at most MaxNATClients). Client 0 is Lab.ClientNS.
	Clients int
	// Flag is the masquerade port selection flag: NATFlagNone,
	// NATFlagRandom or NATFlagFullyRandom.
	Flag string
	// Sysctls are written inside the router namespace (net.* keys, for
	// example net.netfilter.nf_conntrack_tcp_timeout_time_wait).
	Sysctls map[string]string
}

func (n *NATOptions) validate() error {
	if n.Clients == 0 {
		n.Clients = 1
	}
	switch {
	case n.Ports < 1 || n.Ports > 65535-NATPortStart+1:
		return fmt.Errorf("lab: translated port count %d out of range 1..%d", n.Ports, 65535-NATPortStart+1)
	case n.Clients < 1 || n.Clients > MaxNATClients:
		return fmt.Errorf("lab: NAT client count %d out of range 1..%d", n.Clients, MaxNATClients)
	}
	switch n.Flag {
	case NATFlagNone, NATFlagRandom, NATFlagFullyRandom:
	default:
		return fmt.Errorf("lab: bad masquerade flag %q: want %q or %q", n.Flag, NATFlagRandom, NATFlagFullyRandom)
	}
	for k := range n.Sysctls {
		if _, err := sysctlPath(k); err != nil {
			return err
		}
	}
	return nil
}

// NATPortRange returns the inclusive translated port range of ports ports.
func NATPortRange(ports int) [2]int { return [2]int{NATPortStart, NATPortStart + ports - 1} }

// NATRules is the nftables ruleset of the NAT router: flows leaving through
// the server-side link out are masqueraded to ports lo..hi with flag.
func NATRules(out string, lo, hi int, flag string) string {
	f := ""
	if flag != "" {
		f = " " + flag
	}
	return fmt.Sprintf(`table ip %s {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname %q meta l4proto tcp counter masquerade to :%d-%d%s comment "masquerade"
	}
}
`, NATTable, out, lo, hi, f)
}

// NATClientNames returns the namespace and veth names of client i of a NAT
// lab (client 0 has the names of every lab's client), and the router's
// veth end facing it.
func NATClientNames(runID string, i int) (ns, link, routerLink string) {
	if i == 0 {
		c, _ := Names(runID)
		l, _ := LinkNames(runID)
		rc, _ := RouterLinkNames(runID)
		return c, l, rc
	}
	c, _ := Names(runID)
	l, _ := LinkNames(runID)
	n := strconv.Itoa(i)
	return c + n, l + n, LinkPrefix + runID + "-r" + n
}

// BridgeName returns the name of the NAT router's bridge for the clients.
func BridgeName(runID string) string { return LinkPrefix + runID + "-br" }

// NATClientAddr returns the address of client i of a NAT lab.
func NATClientAddr(i int) netip.Addr {
	a := netip.MustParsePrefix(Subnet).Addr().As4()
	a[3] = byte(1 + i)
	return netip.AddrFrom4(a)
}

// buildNAT wires the clients to a bridge in the router, the router to the
// server, loads the NAT ruleset and the router's sysctls, then brings the
// links up and routes the clients through the router. The server gets no
// route back: it only ever talks to the translated address.
func (l *Lab) buildNAT(ctx context.Context, n NATOptions) error {
	cbits := strconv.Itoa(netip.MustParsePrefix(Subnet).Bits())
	sbits := strconv.Itoa(netip.MustParsePrefix(ServerSubnet).Bits())
	br := BridgeName(l.ID)
	steps := [][]string{
		{"link", "add", l.ServerLink, "netns", l.ServerNS, "type", "veth",
			"peer", "name", l.RouterServerLink, "netns", l.RouterNS},
		{"-n", l.RouterNS, "link", "add", br, "type", "bridge"},
		{"-n", l.ServerNS, "link", "set", "lo", "up"},
		{"-n", l.RouterNS, "link", "set", "lo", "up"},
		{"-n", l.RouterNS, "addr", "add", l.RouterClientAddr.String() + "/" + cbits, "dev", br},
		{"-n", l.RouterNS, "addr", "add", l.RouterServerAddr.String() + "/" + sbits, "dev", l.RouterServerLink},
	}
	for _, a := range l.ServerAddrs {
		steps = append(steps, []string{"-n", l.ServerNS, "addr", "add", a.String() + "/" + sbits, "dev", l.ServerLink})
	}
	for i, ns := range l.ClientNSs {
		_, link, rlink := NATClientNames(l.ID, i)
		steps = append(steps,
			[]string{"link", "add", link, "netns", ns, "type", "veth", "peer", "name", rlink, "netns", l.RouterNS},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", ns, "addr", "add", l.ClientAddrs[i].String() + "/" + cbits, "dev", link},
			[]string{"-n", l.RouterNS, "link", "set", rlink, "master", br},
		)
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	if _, err := l.nft(ctx, NATRules(l.RouterServerLink, l.NATPortRange[0], l.NATPortRange[1], n.Flag), "-f", "-"); err != nil {
		return err
	}
	want := map[string]string{"net.ipv4.ip_forward": "1"}
	for k, v := range n.Sysctls {
		want[k] = v
	}
	applied, skipped, err := apply(l.NSPath(l.RouterNS), want)
	if err != nil {
		return err
	}
	for k, v := range want {
		if why, ok := skipped[k]; ok {
			return fmt.Errorf("lab: set router sysctl %s: %s", k, why)
		}
		if applied[k] != normalize(v) {
			return fmt.Errorf("lab: set router sysctl %s=%s: read back %q", k, v, applied[k])
		}
	}
	l.RouterApplied = applied
	steps = [][]string{
		{"-n", l.RouterNS, "link", "set", br, "up"},
		{"-n", l.RouterNS, "link", "set", l.RouterServerLink, "up"},
		{"-n", l.ServerNS, "link", "set", l.ServerLink, "up"},
	}
	for i, ns := range l.ClientNSs {
		_, link, rlink := NATClientNames(l.ID, i)
		steps = append(steps,
			[]string{"-n", l.RouterNS, "link", "set", rlink, "up"},
			[]string{"-n", ns, "link", "set", link, "up"},
			[]string{"-n", ns, "route", "add", ServerSubnet, "via", l.RouterClientAddr.String(), "dev", link},
		)
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// NATCounters reads the packet count of the masquerade rule: the packets
// that created a translation (the first packet of every translated flow).
func (l *Lab) NATCounters(ctx context.Context) (uint64, error) {
	if l.NATPortRange[0] == 0 {
		return 0, errors.New("lab: read NAT counter: lab has no NAT")
	}
	out, err := l.nft(ctx, "", "-j", "list", "table", "ip", NATTable)
	if err != nil {
		return 0, err
	}
	c, err := ruleCounters(out)
	if err != nil {
		return 0, fmt.Errorf("lab: read NAT counter: %w", err)
	}
	v, ok := c["masquerade"]
	if !ok {
		return 0, fmt.Errorf("lab: read NAT counter: no masquerade rule counter in table ip %s", NATTable)
	}
	return v, nil
}
