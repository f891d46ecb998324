package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The firewall lab (Options.FirewallIdle): a router namespace between the
// client and the server that forwards through connection tracking and
// silently drops the packets of flows it has forgotten, like the stateful
// firewall of the second incident (no RST, no ICMP).
//
//	client 198.18.0.1/24 --- 198.18.0.254/24 router 198.18.1.254/24 --- 198.18.1.2/24, ... servers
//	lc-<id>-c                lc-<id>-rc  loadcap-<id>-fw  lc-<id>-rs        lc-<id>-s
const (
	// ServerSubnet is the server side of a firewall lab: the servers are
	// .2, .3, ... and the router is RouterHost. The client side stays
	// Subnet, with the router at RouterHost too.
	ServerSubnet = "198.18.1.0/24"
	// RouterHost is the last byte of the router's address in both subnets.
	RouterHost = 254
	// MaxFirewallIdle is the longest Options.FirewallIdle accepted.
	MaxFirewallIdle = 7 * 24 * time.Hour
	// FirewallTable is the nftables table (family inet) loaded in the
	// router namespace.
	FirewallTable = "loadcap"
)

// FirewallRules is the nftables ruleset loaded in the router namespace. The
// forward chain drops by default; each rule counts its packets under its
// comment (see FirewallCounters). With nf_conntrack_tcp_loose=0 the tracker
// does not pick up a flow in mid-stream: a data or ACK segment of a flow
// whose entry has expired gets no conntrack entry and matches
// `ct state invalid` (measured: the "invalid" counter, never "new-other").
const FirewallRules = `table inet ` + FirewallTable + ` {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state invalid counter drop comment "invalid"
		ct state established,related counter accept comment "established"
		ct state new tcp flags & (fin|syn|rst|ack) == syn counter accept comment "new-syn"
		ct state new counter drop comment "new-other"
		counter drop comment "other"
	}
}
`

// ErrFirewallUnavailable is matched (errors.Is) by the error Create returns
// when a firewall was asked for but nftables or nf_conntrack is missing.
var ErrFirewallUnavailable = errors.New("lab: firewall unavailable: needs nft (nftables) and nf_conntrack")

// unavailableError keeps the message of the underlying error and matches
// ErrFirewallUnavailable.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string        { return e.err.Error() }
func (e *unavailableError) Unwrap() error        { return e.err }
func (e *unavailableError) Is(target error) bool { return target == ErrFirewallUnavailable }

// RouterName returns the router namespace name of a firewall lab.
func RouterName(runID string) string { return Prefix + runID + "-fw" }

// RouterLinkNames returns the router's veth ends facing the client and the
// server, for a run id.
func RouterLinkNames(runID string) (client, server string) {
	return LinkPrefix + runID + "-rc", LinkPrefix + runID + "-rs"
}

// FirewallAddrs returns the router's addresses on the client and on the
// server side and the n server addresses of every firewall lab. The client
// address is the one Addrs returns.
func FirewallAddrs(n int) (routerClient, routerServer netip.Addr, servers []netip.Addr) {
	host := func(prefix string, b byte) netip.Addr {
		a := netip.MustParsePrefix(prefix).Addr().As4()
		a[3] = b
		return netip.AddrFrom4(a)
	}
	routerClient = host(Subnet, RouterHost)
	routerServer = host(ServerSubnet, RouterHost)
	for i := range n {
		servers = append(servers, host(ServerSubnet, byte(2+i)))
	}
	return routerClient, routerServer, servers
}

func validFirewallIdle(d time.Duration) error {
	switch {
	case d < 0 || d > MaxFirewallIdle:
		return fmt.Errorf("lab: firewall idle timeout %v out of range 1s..%v", d, MaxFirewallIdle)
	case d%time.Second != 0:
		return fmt.Errorf("lab: firewall idle timeout %v: want whole seconds (nf_conntrack_tcp_timeout_established is in seconds)", d)
	}
	return nil
}

// conntrackProbe is a per-namespace netfilter sysctl that exists once
// nf_conntrack is loaded.
const conntrackProbe = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"

// firewallAvailable checks for the nft command and for nf_conntrack, loading
// the module with modprobe when it is not there yet.
func firewallAvailable(ctx context.Context) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return &unavailableError{fmt.Errorf("lab: find nft command (install nftables): %w", err)}
	}
	if _, err := os.Stat(conntrackProbe); err == nil {
		return nil
	}
	out, err := exec.CommandContext(ctx, "modprobe", "nf_conntrack").CombinedOutput()
	if err != nil {
		return &unavailableError{fmt.Errorf("lab: load nf_conntrack (modprobe nf_conntrack): %w: %s", err, trimOut(out))}
	}
	if _, err := os.Stat(conntrackProbe); err != nil {
		return &unavailableError{fmt.Errorf("lab: load nf_conntrack: loaded, but %s is missing: %w", conntrackProbe, err)}
	}
	return nil
}

// routerSysctls are written in the router namespace only.
func routerSysctls(idle time.Duration) map[string]string {
	return map[string]string{
		"net.ipv4.ip_forward":                                "1",
		"net.netfilter.nf_conntrack_tcp_loose":               "0",
		"net.netfilter.nf_conntrack_tcp_be_liberal":          "0",
		"net.netfilter.nf_conntrack_tcp_timeout_established": strconv.Itoa(int(idle / time.Second)),
	}
}

// buildRouted wires client <-> router <-> server: two veth pairs, the
// addresses, the firewall (ruleset and sysctls, loaded before any link is
// up), then the links and the routes through the router.
func (l *Lab) buildRouted(ctx context.Context) error {
	cbits := strconv.Itoa(netip.MustParsePrefix(Subnet).Bits())
	sbits := strconv.Itoa(netip.MustParsePrefix(ServerSubnet).Bits())
	steps := [][]string{
		{"link", "add", l.ClientLink, "netns", l.ClientNS, "type", "veth",
			"peer", "name", l.RouterClientLink, "netns", l.RouterNS},
		{"link", "add", l.ServerLink, "netns", l.ServerNS, "type", "veth",
			"peer", "name", l.RouterServerLink, "netns", l.RouterNS},
		{"-n", l.ClientNS, "link", "set", "lo", "up"},
		{"-n", l.ServerNS, "link", "set", "lo", "up"},
		{"-n", l.RouterNS, "link", "set", "lo", "up"},
		{"-n", l.ClientNS, "addr", "add", l.ClientAddr.String() + "/" + cbits, "dev", l.ClientLink},
		{"-n", l.RouterNS, "addr", "add", l.RouterClientAddr.String() + "/" + cbits, "dev", l.RouterClientLink},
		{"-n", l.RouterNS, "addr", "add", l.RouterServerAddr.String() + "/" + sbits, "dev", l.RouterServerLink},
	}
	for _, a := range l.ServerAddrs {
		steps = append(steps, []string{"-n", l.ServerNS, "addr", "add", a.String() + "/" + sbits, "dev", l.ServerLink})
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	if err := l.loadFirewall(ctx); err != nil {
		return err
	}
	steps = [][]string{
		{"-n", l.RouterNS, "link", "set", l.RouterClientLink, "up"},
		{"-n", l.RouterNS, "link", "set", l.RouterServerLink, "up"},
		{"-n", l.ClientNS, "link", "set", l.ClientLink, "up"},
		{"-n", l.ServerNS, "link", "set", l.ServerLink, "up"},
		{"-n", l.ClientNS, "route", "add", ServerSubnet, "via", l.RouterClientAddr.String(), "dev", l.ClientLink},
		{"-n", l.ServerNS, "route", "add", Subnet, "via", l.RouterServerAddr.String(), "dev", l.ServerLink},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// loadFirewall loads FirewallRules and writes the router's sysctls inside
// the router namespace. The netfilter sysctls are per namespace: the host's
// values are never read or written here.
func (l *Lab) loadFirewall(ctx context.Context) error {
	if _, err := l.nft(ctx, FirewallRules, "-f", "-"); err != nil {
		return err
	}
	want := routerSysctls(l.FirewallIdle)
	applied, skipped, err := apply(l.NSPath(l.RouterNS), want)
	if err != nil {
		return err
	}
	for k, v := range want {
		if why, ok := skipped[k]; ok {
			return &unavailableError{fmt.Errorf("lab: set router sysctl %s: %s (is nf_conntrack loaded?)", k, why)}
		}
		if applied[k] != v {
			return fmt.Errorf("lab: set router sysctl %s=%s: read back %q", k, v, applied[k])
		}
	}
	l.RouterApplied = applied
	return nil
}

// nft runs the nft command with args in the router namespace, with stdin
// as its standard input, and returns its standard output.
func (l *Lab) nft(ctx context.Context, stdin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.RouterNS, "nft"}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("lab: nft %s in %s: %w: %s", joinArgs(args), l.RouterNS, err, trimOut([]byte(stderr.String())))
	}
	return out, nil
}

// FirewallCounters are the packet counts of the firewall's rules, by rule.
type FirewallCounters struct {
	// Invalid counts packets dropped as `ct state invalid`: the segments of
	// flows the router no longer tracks (entry expired after the idle
	// timeout), which nf_conntrack_tcp_loose=0 refuses to pick up again.
	Invalid uint64
	// Established counts packets forwarded for tracked flows (and related
	// ICMP errors).
	Established uint64
	// NewSYN counts the connection-opening SYNs accepted.
	NewSYN uint64
	// NewOther counts new flows that did not start with a SYN (dropped).
	NewOther uint64
	// Other counts the remaining packets (untracked), dropped.
	Other uint64
}

// Dropped is the number of packets the firewall dropped.
func (c FirewallCounters) Dropped() uint64 { return c.Invalid + c.NewOther + c.Other }

// FirewallCounters reads the packet counters of the firewall's rules.
func (l *Lab) FirewallCounters(ctx context.Context) (FirewallCounters, error) {
	var c FirewallCounters
	if l.RouterNS == "" {
		return c, errors.New("lab: read firewall counters: lab has no firewall")
	}
	out, err := l.nft(ctx, "", "-j", "list", "table", "inet", FirewallTable)
	if err != nil {
		return c, err
	}
	got, err := ruleCounters(out)
	if err != nil {
		return c, fmt.Errorf("lab: read firewall counters: %w", err)
	}
	dst := map[string]*uint64{
		"invalid": &c.Invalid, "established": &c.Established, "new-syn": &c.NewSYN,
		"new-other": &c.NewOther, "other": &c.Other,
	}
	seen := 0
	for name, p := range dst {
		if v, ok := got[name]; ok {
			*p = v
			seen++
		}
	}
	if seen != len(dst) {
		return c, fmt.Errorf("lab: read firewall counters: found %d of %d rule counters in table inet %s", seen, len(dst), FirewallTable)
	}
	return c, nil
}

// ruleCounters parses `nft -j list table ...` output into the packet count
// of every rule with a comment and a counter, by comment.
func ruleCounters(out []byte) (map[string]uint64, error) {
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Comment string `json:"comment"`
				Expr    []struct {
					Counter *struct {
						Packets uint64 `json:"packets"`
					} `json:"counter"`
				} `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parse nft output: %w", err)
	}
	got := map[string]uint64{}
	for _, o := range doc.Nftables {
		if o.Rule == nil || o.Rule.Comment == "" {
			continue
		}
		for _, e := range o.Rule.Expr {
			if e.Counter != nil {
				got[o.Rule.Comment] = e.Counter.Packets
			}
		}
	}
	return got, nil
}
