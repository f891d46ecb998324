package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Naming and addressing of every lab.
const (
	// Prefix starts the name of every namespace a lab creates.
	Prefix = "loadcap-"
	// LinkPrefix starts the name of every veth a lab creates (IFNAMSIZ
	// allows 15 characters, so link names are shorter than namespace names).
	LinkPrefix = "lc-"
	// NetnsDir is where `ip netns` keeps its namespace handles.
	NetnsDir = "/var/run/netns"
	// OwnerDir holds one file per live lab naming the process that owns it,
	// so Cleanup can tell leftovers from the labs of running processes.
	OwnerDir = "/var/run/loadcap"
	// Subnet is the lab's network, taken from the benchmarking range
	// 198.18.0.0/15. The client is .1, the targets are .2, .3, ... (with a
	// firewall, Subnet is the client side only: see ServerSubnet).
	Subnet = "198.18.0.0/24"
	// MaxTargets is the most server addresses a lab can have.
	MaxTargets = 200
	// PortRangeStart is the first port of the range set by Options.Ports.
	PortRangeStart = 40000
	// StopDelay is how long Close waits after SIGTERM before SIGKILL.
	StopDelay = 3 * time.Second
)

// ErrNotPermitted is returned by Create (and Cleanup) when the process lacks
// the privileges to create namespaces. Commands exit with status 2 on it.
var ErrNotPermitted = errors.New("lab: needs root or CAP_NET_ADMIN")

// Options describe the lab to create.
type Options struct {
	// RunID names the lab: 1 to 8 characters of [a-z0-9]. Empty means a
	// random one.
	RunID string
	// Targets is the number of server addresses (default 1): a dual-write
	// gets two distinct destination IPs.
	Targets int
	// Sysctls is the profile written into the client namespace: dotted keys
	// such as "net.ipv4.tcp_tw_reuse" to values.
	Sysctls map[string]string
	// Ports, when positive, shrinks net.ipv4.ip_local_port_range in the
	// client namespace to that many ports starting at PortRangeStart. It
	// overrides the same key in Sysctls.
	Ports int
	// ServerSysctls is written into the server namespace.
	ServerSysctls map[string]string
	// FirewallIdle, when positive, puts a stateful firewall between client
	// and server: a router namespace that forwards through connection
	// tracking and silently drops the packets of flows idle for longer than
	// FirewallIdle (see firewall.go). Whole seconds, 1 s to MaxFirewallIdle.
	// Zero means no firewall: client and server share one veth pair.
	FirewallIdle time.Duration
	// NAT, when set, puts a translating router between the client
	// namespaces (NAT.Clients of them) and the server: see nat.go. It
	// excludes FirewallIdle.
	NAT *NATOptions
}

// Lab is a client and a server namespace joined by a veth pair or, with
// Options.FirewallIdle, by a router namespace running a stateful firewall.
// Its fields are read-only after Create.
type Lab struct {
	// ID is the run id the names are made from.
	ID string
	// ClientNS and ServerNS are the namespace names (see NSPath).
	ClientNS, ServerNS string
	// ClientLink and ServerLink are the veth ends in each namespace.
	ClientLink, ServerLink string
	// ClientAddr is the client's address.
	ClientAddr netip.Addr
	// ServerAddrs has one address per target, in order: the addresses the
	// client dials (in ServerSubnet when there is a firewall).
	ServerAddrs []netip.Addr
	// RouterNS is the firewall's router namespace, "" without a firewall.
	RouterNS string
	// RouterClientLink and RouterServerLink are the router's veth ends
	// facing the client and the server ("" without a firewall).
	RouterClientLink, RouterServerLink string
	// RouterClientAddr and RouterServerAddr are the router's addresses on
	// each side: the gateways of the client and of the server namespace
	// (invalid without a firewall).
	RouterClientAddr, RouterServerAddr netip.Addr
	// ClientNSs and ClientAddrs list every client namespace and its
	// address, ClientNS first (more than one behind a NAT router).
	ClientNSs   []string
	ClientAddrs []netip.Addr
	// NATPortRange is the router's translated port range, inclusive
	// ({0, 0} without NAT); NATFlag its masquerade flag.
	NATPortRange [2]int
	NATFlag      string
	// FirewallIdle is the firewall's idle timeout in force (0: none).
	FirewallIdle time.Duration
	// RouterApplied holds the sysctls written in the router namespace,
	// with the value read back (nil without a firewall).
	RouterApplied map[string]string
	// PortRange is the client's ip_local_port_range in force, inclusive.
	PortRange [2]int
	// Applied holds the client sysctls written, with the value read back.
	Applied map[string]string
	// Skipped holds the client sysctls not written, with the reason.
	Skipped map[string]string
	// ServerApplied and ServerSkipped are the same for ServerSysctls.
	ServerApplied, ServerSkipped map[string]string

	ctx    context.Context // cancelled by Close: stops Command processes
	cancel context.CancelFunc
	made   []string // namespaces this lab created, in order
	owner  string   // owner file path, "" if none was written

	closeOnce sync.Once
	closeErr  error
}

var runIDRe = regexp.MustCompile(`^[a-z0-9]{1,8}$`)

// NewRunID returns a random run id suitable for Options.RunID.
func NewRunID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("lab: read random: %v", err)) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// Names returns the client and server namespace names for a run id.
func Names(runID string) (client, server string) {
	return Prefix + runID + "-cli", Prefix + runID + "-srv"
}

// LinkNames returns the client and server veth names for a run id.
func LinkNames(runID string) (client, server string) {
	return LinkPrefix + runID + "-c", LinkPrefix + runID + "-s"
}

// Addrs returns the client address and the n server addresses of every lab
// without a firewall (see FirewallAddrs for the others).
func Addrs(n int) (client netip.Addr, servers []netip.Addr) {
	base := netip.MustParsePrefix(Subnet).Addr()
	client = base.Next()
	a := client
	for range n {
		a = a.Next()
		servers = append(servers, a)
	}
	return client, servers
}

// PortRangeFor returns the inclusive port range Options.Ports selects.
func PortRangeFor(ports int) ([2]int, error) {
	if ports < 1 || ports > 65535-1024+1 {
		return [2]int{}, fmt.Errorf("lab: port count %d out of range 1..%d", ports, 65535-1024+1)
	}
	lo := PortRangeStart
	if lo+ports-1 > 65535 {
		lo = 65535 - ports + 1
	}
	return [2]int{lo, lo + ports - 1}, nil
}

func (o *Options) validate() error {
	if o.RunID == "" {
		o.RunID = NewRunID()
	}
	if !runIDRe.MatchString(o.RunID) {
		return fmt.Errorf("lab: bad run id %q: want 1 to 8 characters of [a-z0-9]", o.RunID)
	}
	if o.Targets == 0 {
		o.Targets = 1
	}
	if o.Targets < 1 || o.Targets > MaxTargets {
		return fmt.Errorf("lab: target count %d out of range 1..%d", o.Targets, MaxTargets)
	}
	if o.Ports != 0 {
		if _, err := PortRangeFor(o.Ports); err != nil {
			return err
		}
	}
	if err := validFirewallIdle(o.FirewallIdle); err != nil {
		return err
	}
	if o.NAT != nil {
		if o.FirewallIdle > 0 {
			return errors.New("lab: a NAT router and a firewall idle timeout exclude each other")
		}
		if err := o.NAT.validate(); err != nil {
			return err
		}
	}
	for _, m := range []map[string]string{o.Sysctls, o.ServerSysctls} {
		for k := range m {
			if _, err := sysctlPath(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// Privileged reports whether the process has the capabilities a lab needs
// (CAP_NET_ADMIN for links and addresses, CAP_SYS_ADMIN for namespaces).
func Privileged() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return os.Geteuid() == 0
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	return has(unix.CAP_NET_ADMIN) && has(unix.CAP_SYS_ADMIN)
}

// Create makes the namespaces, the veth pair and the addresses, brings the
// links up and applies the sysctl profiles. On error it removes whatever it
// made. ctx bounds the creation only: processes started with Command run
// until they exit or Close stops them, so a cancelled run can still clean
// up in order.
func Create(ctx context.Context, o Options) (*Lab, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if !Privileged() {
		return nil, ErrNotPermitted
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("lab: find ip command (install iproute2): %w", err)
	}
	l := &Lab{ID: o.RunID}
	l.ClientNS, l.ServerNS = Names(o.RunID)
	l.ClientLink, l.ServerLink = LinkNames(o.RunID)
	l.ClientAddr, l.ServerAddrs = Addrs(o.Targets)
	namespaces := []string{l.ClientNS, l.ServerNS}
	if o.FirewallIdle > 0 {
		if err := firewallAvailable(ctx); err != nil {
			return nil, err
		}
		l.RouterNS = RouterName(o.RunID)
		l.RouterClientLink, l.RouterServerLink = RouterLinkNames(o.RunID)
		l.RouterClientAddr, l.RouterServerAddr, l.ServerAddrs = FirewallAddrs(o.Targets)
		l.FirewallIdle = o.FirewallIdle
		namespaces = append(namespaces, l.RouterNS)
	}
	l.ClientNSs, l.ClientAddrs = []string{l.ClientNS}, []netip.Addr{l.ClientAddr}
	if o.NAT != nil {
		if err := firewallAvailable(ctx); err != nil {
			return nil, err
		}
		l.RouterNS = RouterName(o.RunID)
		l.RouterClientLink, l.RouterServerLink = RouterLinkNames(o.RunID)
		l.RouterClientAddr, l.RouterServerAddr, l.ServerAddrs = FirewallAddrs(o.Targets)
		l.NATPortRange, l.NATFlag = NATPortRange(o.NAT.Ports), o.NAT.Flag
		for i := 1; i < o.NAT.Clients; i++ {
			ns, _, _ := NATClientNames(o.RunID, i)
			l.ClientNSs = append(l.ClientNSs, ns)
			l.ClientAddrs = append(l.ClientAddrs, NATClientAddr(i))
		}
		namespaces = append(namespaces, l.RouterNS)
		namespaces = append(namespaces, l.ClientNSs[1:]...)
	}
	l.ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, ns := range namespaces {
		if _, err := os.Stat(l.NSPath(ns)); err == nil {
			l.cancel()
			return nil, fmt.Errorf("lab: create %s: namespace exists (run `loadcap lab cleanup`?)", ns)
		}
	}
	if err := l.build(ctx, o); err != nil {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return l, nil
}

func (l *Lab) build(ctx context.Context, o Options) error {
	if err := l.writeOwner(); err != nil {
		return err
	}
	namespaces := []string{l.ClientNS, l.ServerNS}
	if l.RouterNS != "" {
		namespaces = append(namespaces, l.RouterNS)
	}
	namespaces = append(namespaces, l.ClientNSs[1:]...)
	for _, ns := range namespaces {
		if err := ip(ctx, "netns", "add", ns); err != nil {
			return err
		}
		l.made = append(l.made, ns)
	}
	if o.NAT != nil {
		if err := l.buildNAT(ctx, *o.NAT); err != nil {
			return err
		}
		return l.applySysctls(ctx, o)
	}
	if l.RouterNS != "" {
		if err := l.buildRouted(ctx); err != nil {
			return err
		}
		return l.applySysctls(ctx, o)
	}
	bits := strconv.Itoa(netip.MustParsePrefix(Subnet).Bits())
	steps := [][]string{
		{"link", "add", l.ClientLink, "netns", l.ClientNS, "type", "veth",
			"peer", "name", l.ServerLink, "netns", l.ServerNS},
		{"-n", l.ClientNS, "link", "set", "lo", "up"},
		{"-n", l.ServerNS, "link", "set", "lo", "up"},
		{"-n", l.ClientNS, "addr", "add", l.ClientAddr.String() + "/" + bits, "dev", l.ClientLink},
	}
	for _, a := range l.ServerAddrs {
		steps = append(steps, []string{"-n", l.ServerNS, "addr", "add", a.String() + "/" + bits, "dev", l.ServerLink})
	}
	steps = append(steps,
		[]string{"-n", l.ClientNS, "link", "set", l.ClientLink, "up"},
		[]string{"-n", l.ServerNS, "link", "set", l.ServerLink, "up"},
	)
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return l.applySysctls(ctx, o)
}

// applySysctls writes the client and server profiles and reads back the
// client's port range.
func (l *Lab) applySysctls(ctx context.Context, o Options) error {
	client := make(map[string]string, len(o.Sysctls)+1)
	rangePath, _ := sysctlPath(portRangeKey)
	for k, v := range o.Sysctls {
		if p, _ := sysctlPath(k); o.Ports > 0 && p == rangePath {
			continue // Ports overrides it
		}
		client[k] = v
	}
	if o.Ports > 0 {
		r, _ := PortRangeFor(o.Ports) // validated
		client[portRangeKey] = fmt.Sprintf("%d %d", r[0], r[1])
	}
	var err error
	for _, ns := range l.ClientNSs {
		if l.Applied, l.Skipped, err = apply(l.NSPath(ns), client); err != nil {
			return err
		}
	}
	if l.ServerApplied, l.ServerSkipped, err = apply(l.NSPath(l.ServerNS), o.ServerSysctls); err != nil {
		return err
	}
	got, err := Sysctls(l.NSPath(l.ClientNS), []string{portRangeKey})
	if err != nil {
		return err
	}
	if l.PortRange, err = parseRange(got[portRangeKey]); err != nil {
		return err
	}
	return ctx.Err()
}

const portRangeKey = "net.ipv4.ip_local_port_range"

func parseRange(s string) ([2]int, error) {
	var r [2]int
	if _, err := fmt.Sscanf(s, "%d %d", &r[0], &r[1]); err != nil {
		return r, fmt.Errorf("lab: parse port range %q: %w", s, err)
	}
	return r, nil
}

// NSPath returns the path of a namespace handle, for Do and Sysctls.
func (l *Lab) NSPath(ns string) string { return filepath.Join(NetnsDir, ns) }

// Command returns a command that runs name with args inside namespace ns
// (ClientNS, ServerNS or RouterNS) through `ip netns exec`, which execs the program in
// place: the started process's pid is the program's own. The process gets
// SIGTERM when the lab is closed, and SIGKILL StopDelay later; the caller
// still starts it and waits for it. Use os.Executable() as name to re-exec
// loadcap itself.
func (l *Lab) Command(ns, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(l.ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = StopDelay
	return cmd
}

// Close stops the lab's processes and deletes its namespaces. It is
// idempotent, safe to call on a nil or half-built Lab, and returns the first
// call's result on every call.
func (l *Lab) Close() error {
	if l == nil {
		return nil
	}
	l.closeOnce.Do(func() { l.closeErr = l.close() })
	return l.closeErr
}

func (l *Lab) close() error {
	if l.cancel != nil {
		l.cancel()
	}
	// Bounded, independent of any caller context: cleanup must run even
	// after the run's context was cancelled by a signal.
	ctx, cancel := context.WithTimeout(context.Background(), StopDelay+10*time.Second)
	defer cancel()
	var errs []error
	for i := len(l.made) - 1; i >= 0; i-- {
		if err := removeNS(ctx, l.made[i], StopDelay+time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	l.made = nil
	if l.owner != "" {
		if err := os.Remove(l.owner); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("lab: remove owner file: %w", err))
		}
	}
	return errors.Join(errs...)
}

// removeNS waits up to grace for the processes in namespace ns to exit,
// kills by pid those still there, and deletes the namespace.
func removeNS(ctx context.Context, ns string, grace time.Duration) error {
	path := filepath.Join(NetnsDir, ns)
	deadline := time.Now().Add(grace)
	for {
		pids, err := pidsIn(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // already removed (by Cleanup, or by hand)
			}
			return err
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, p := range pids {
				_ = unix.Kill(p, unix.SIGKILL) // may have exited meanwhile
			}
			time.Sleep(100 * time.Millisecond)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := ip(ctx, "netns", "delete", ns); err != nil {
		if _, serr := os.Stat(path); errors.Is(serr, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return nil
}

// ip runs the ip command with args and folds its stderr into the error.
func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: ip %s: %w: %s", joinArgs(args), err, trimOut(out))
	}
	return nil
}

func joinArgs(args []string) string {
	s := ""
	for i, a := range args {
		if i > 0 {
			s += " "
		}
		s += a
	}
	return s
}

func trimOut(b []byte) string {
	const max = 300
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	if len(b) > max {
		b = b[:max]
	}
	return string(b)
}
