package lab

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
)

func TestSysctlPath(t *testing.T) {
	for key, want := range map[string]string{
		"net.ipv4.tcp_tw_reuse":             "/proc/sys/net/ipv4/tcp_tw_reuse",
		"net/ipv4/tcp_tw_reuse":             "/proc/sys/net/ipv4/tcp_tw_reuse",
		"net.ipv4.conf.eth0/100.rp_filter":  "/proc/sys/net/ipv4/conf/eth0.100/rp_filter",
		"net/ipv4/conf/eth0.100/rp_filter":  "/proc/sys/net/ipv4/conf/eth0.100/rp_filter",
		" net.ipv4.ip_local_port_range ":    "/proc/sys/net/ipv4/ip_local_port_range",
		"vm.swappiness":                     "/proc/sys/vm/swappiness",
		"net.ipv4.tcp_tw_recycle":           "/proc/sys/net/ipv4/tcp_tw_recycle",
		"net.core.somaxconn":                "/proc/sys/net/core/somaxconn",
		"net.ipv4.neigh.default.gc_thresh1": "/proc/sys/net/ipv4/neigh/default/gc_thresh1",
	} {
		got, err := sysctlPath(key)
		if err != nil || got != want {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q", key, got, err, want)
		}
	}
	for _, key := range []string{"", "net..ipv4", "net/../../etc/passwd", "net.ipv4."} {
		if p, err := sysctlPath(key); err == nil {
			t.Errorf("sysctlPath(%q) = %q, want an error", key, p)
		}
	}
	if perNamespace("vm.swappiness") || perNamespace("kernel.pid_max") || !perNamespace("net.ipv4.tcp_fin_timeout") {
		t.Error("perNamespace: want only net.* keys")
	}
}

func TestNamesAndAddrs(t *testing.T) {
	c, s := Names("ab12cd34")
	if c != "loadcap-ab12cd34-cli" || s != "loadcap-ab12cd34-srv" {
		t.Errorf("Names = %q, %q", c, s)
	}
	lc, ls := LinkNames("ab12cd34")
	if len(lc) > 15 || len(ls) > 15 || lc == ls {
		t.Errorf("LinkNames = %q, %q: want distinct names of at most 15 bytes", lc, ls)
	}
	cli, srv := Addrs(3)
	want := []string{"198.18.0.2", "198.18.0.3", "198.18.0.4"}
	if cli != netip.MustParseAddr("198.18.0.1") || len(srv) != 3 {
		t.Fatalf("Addrs(3) = %v, %v", cli, srv)
	}
	bench := netip.MustParsePrefix("198.18.0.0/15")
	for i, a := range srv {
		if a.String() != want[i] || !bench.Contains(a) {
			t.Errorf("server address %d = %v, want %s", i, a, want[i])
		}
	}
	if r, err := PortRangeFor(200); err != nil || r != [2]int{40000, 40199} {
		t.Errorf("PortRangeFor(200) = %v, %v", r, err)
	}
	if r, err := PortRangeFor(30000); err != nil || r != [2]int{35536, 65535} {
		t.Errorf("PortRangeFor(30000) = %v, %v", r, err)
	}
	for _, n := range []int{0, -1, 70000} {
		if _, err := PortRangeFor(n); err == nil {
			t.Errorf("PortRangeFor(%d): want an error", n)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{RunID: "UPPER"},
		{RunID: "toolongid9"},
		{RunID: "a-b"},
		{Targets: MaxTargets + 1},
		{Targets: -1},
		{Ports: 70000},
		{Sysctls: map[string]string{"net/../x": "1"}},
	} {
		if err := o.validate(); err == nil {
			t.Errorf("validate(%+v): want an error", o)
		}
	}
	o := Options{}
	if err := o.validate(); err != nil || !runIDRe.MatchString(o.RunID) || o.Targets != 1 {
		t.Errorf("validate(zero) = %v, %+v", err, o)
	}
}

func TestCreateNotPermitted(t *testing.T) {
	if Privileged() {
		t.Skip("running with CAP_NET_ADMIN: covered by the root tests")
	}
	_, err := Create(context.Background(), Options{})
	if !errors.Is(err, ErrNotPermitted) || err.Error() != "lab: needs root or CAP_NET_ADMIN" {
		t.Fatalf("Create without privileges: %v", err)
	}
}

// requireRoot skips tests that create namespaces when not privileged, or
// fails them when LOADCAP_REQUIRE_SERVERS=1 (make test) forbids skipping.
func requireRoot(t *testing.T) {
	t.Helper()
	if !Privileged() {
		testservers.Unavailable(t, "lab tests need root or CAP_NET_ADMIN+CAP_SYS_ADMIN")
	}
}

// newLab creates a lab removed at the end of the test, even on failure.
func newLab(t *testing.T, o Options) *Lab {
	t.Helper()
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Create(ctx, o)
	if err != nil {
		t.Fatalf("create lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
		assertGone(t, l.ID)
	})
	return l
}

// assertGone fails the test if a namespace, link or owner file of run id
// remains.
func assertGone(t *testing.T, id string) {
	t.Helper()
	c, s := Names(id)
	names := []string{c, s, RouterName(id)}
	for i := 1; i < MaxNATClients; i++ {
		ns, _, _ := NATClientNames(id, i)
		names = append(names, ns)
	}
	for _, ns := range names {
		if _, err := os.Stat(filepath.Join(NetnsDir, ns)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s left behind (stat: %v)", ns, err)
		}
	}
	links, err := hostLinks()
	if err != nil {
		t.Fatal(err)
	}
	lc, ls := LinkNames(id)
	rc, rs := RouterLinkNames(id)
	for _, name := range links {
		if name == lc || name == ls || name == rc || name == rs || strings.HasPrefix(name, LinkPrefix+id+"-") {
			t.Errorf("link %s left in the host namespace", name)
		}
	}
	if _, err := os.Stat(filepath.Join(OwnerDir, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("owner file of %s left behind (stat: %v)", id, err)
	}
}

func TestCreateClose(t *testing.T) {
	t.Parallel()
	l := newLab(t, Options{
		Targets: 2,
		Ports:   200,
		Sysctls: map[string]string{
			"net.ipv4.tcp_tw_reuse":        "1",
			"net.ipv4.tcp_tw_recycle":      "1",
			"vm.swappiness":                "10",
			"net.ipv4.ip_local_port_range": "1024 65535", // overridden by Ports
		},
		ServerSysctls: map[string]string{"net.core.somaxconn": "1024"},
	})
	if l.PortRange != [2]int{40000, 40199} {
		t.Errorf("PortRange = %v", l.PortRange)
	}
	if l.Applied["net.ipv4.tcp_tw_reuse"] != "1" || l.Applied[portRangeKey] != "40000 40199" {
		t.Errorf("Applied = %v", l.Applied)
	}
	if l.Skipped["net.ipv4.tcp_tw_recycle"] != SkipAbsent || l.Skipped["vm.swappiness"] != SkipGlobal {
		t.Errorf("Skipped = %v", l.Skipped)
	}
	if l.ServerApplied["net.core.somaxconn"] != "1024" {
		t.Errorf("ServerApplied = %v", l.ServerApplied)
	}
	got, err := Sysctls(l.NSPath(l.ClientNS), []string{"net.ipv4.tcp_tw_reuse", portRangeKey, "net.ipv4.tcp_tw_recycle"})
	if err != nil {
		t.Fatal(err)
	}
	if got["net.ipv4.tcp_tw_reuse"] != "1" || got[portRangeKey] != "40000 40199" || len(got) != 2 {
		t.Errorf("Sysctls in client = %v", got)
	}
	// The server namespace keeps the kernel's defaults.
	got, err = Sysctls(l.NSPath(l.ServerNS), []string{"net.ipv4.tcp_tw_reuse", portRangeKey})
	if err != nil {
		t.Fatal(err)
	}
	if got["net.ipv4.tcp_tw_reuse"] != "2" || got[portRangeKey] != "32768 60999" {
		t.Errorf("Sysctls in server = %v", got)
	}

	// The addresses are where they should be, as seen by a child process.
	out, err := l.Command(l.ServerNS, "ip", "-4", "-o", "addr", "show", "dev", l.ServerLink).CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr in server: %v: %s", err, out)
	}
	for _, a := range l.ServerAddrs {
		if !strings.Contains(string(out), " "+a.String()+"/24 ") {
			t.Errorf("server address %v missing: %s", a, out)
		}
	}
	out, err = l.Command(l.ClientNS, "cat", "/proc/sys/net/ipv4/ip_local_port_range").Output()
	if err != nil || strings.Join(strings.Fields(string(out)), " ") != "40000 40199" {
		t.Errorf("port range seen by a child in the client: %q, %v", out, err)
	}
	// Both targets answer from the client namespace, from the client address.
	for _, a := range l.ServerAddrs {
		ln := listen(t, l, a, 8086, false)
		var local string
		err := Do(l.NSPath(l.ClientNS), func() error {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(a, 8086).String(), 2*time.Second)
			if err != nil {
				return err
			}
			local = c.LocalAddr().String()
			return c.Close()
		})
		if err != nil || !strings.HasPrefix(local, l.ClientAddr.String()+":") {
			t.Errorf("dial %v from client: %v (local address %s)", a, err, local)
		}
		ln.Close()
	}
	left, err := Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	for _, lo := range left {
		if lo.RunID == l.ID && (!lo.Live || lo.OwnerPID != os.Getpid()) {
			t.Errorf("own lab listed as %+v, want live and owned by this process", lo)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	assertGone(t, l.ID)
}

func TestCloseStopsProcesses(t *testing.T) {
	t.Parallel()
	l := newLab(t, Options{})
	term := l.Command(l.ServerNS, "sleep", "300")
	// A process that ignores SIGTERM is killed StopDelay later.
	stubborn := l.Command(l.ClientNS, "sh", "-c", "trap '' TERM; sleep 300 & wait")
	for _, c := range []*exec.Cmd{term, stubborn} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	waited := make(chan error, 2)
	for _, c := range []*exec.Cmd{term, stubborn} {
		go func() { waited <- c.Wait() }()
	}
	// Wait until sh has set its trap and started sleep (two processes).
	var pids []int
	for deadline := time.Now().Add(5 * time.Second); len(pids) < 2; time.Sleep(20 * time.Millisecond) {
		var err error
		if pids, err = pidsIn(l.NSPath(l.ClientNS)); err != nil || time.Now().After(deadline) {
			t.Fatalf("processes in client namespace: %v, %v", pids, err)
		}
	}
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	for range 2 {
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			t.Fatal("process still running after Close")
		}
	}
	for _, p := range pids { // the sleep child of sh, too
		if running(p) {
			t.Errorf("pid %d still running after Close", p)
		}
	}
	if took < StopDelay || took > StopDelay+3*time.Second {
		t.Errorf("Close took %v, want SIGKILL about StopDelay (%v) after SIGTERM", took, StopDelay)
	}
	t.Logf("Close with a SIGTERM-ignoring child took %v", took.Round(time.Millisecond))
	assertGone(t, l.ID)
}

func TestFailedCreateLeavesNothing(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	id := NewRunID()
	_, err := Create(context.Background(), Options{
		RunID:   id,
		Sysctls: map[string]string{"net.ipv4.tcp_tw_reuse": "banana"},
	})
	if err == nil || !strings.Contains(err.Error(), "tcp_tw_reuse") || !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Create with a bad value: %v, want an EINVAL error naming the key", err)
	}
	assertGone(t, id)

	// An existing namespace of the same name is not ours to delete.
	l := newLab(t, Options{})
	if _, err := Create(context.Background(), Options{RunID: l.ID}); err == nil {
		t.Fatal("Create over an existing lab: want an error")
	}
	for _, ns := range []string{l.ClientNS, l.ServerNS} {
		if _, err := os.Stat(l.NSPath(ns)); err != nil {
			t.Errorf("existing namespace removed by a failed Create: %v", err)
		}
	}
}

func TestDoRestoresNamespace(t *testing.T) {
	t.Parallel()
	l := newLab(t, Options{})
	host, err := statNS("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	want, err := statNS(l.NSPath(l.ClientNS))
	if err != nil {
		t.Fatal(err)
	}
	for range 50 { // threads are reused: each must have come back
		err := Do(l.NSPath(l.ClientNS), func() error {
			got, err := statNS("/proc/thread-self/ns/net")
			if err != nil {
				return err
			}
			if got != want {
				t.Error("Do: fn not in the namespace")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan nsIno)
		go func() { got, _ := statNS("/proc/thread-self/ns/net"); done <- got }()
		if got := <-done; got != host {
			t.Fatal("a goroutine runs in the lab namespace after Do")
		}
	}
	sentinel := errors.New("x")
	if err := Do(l.NSPath(l.ClientNS), func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do error = %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want boom", r)
			}
		}()
		_ = Do(l.NSPath(l.ClientNS), func() error { panic("boom") })
	}()
	if err := Do(filepath.Join(NetnsDir, "loadcap-nonexist-cli"), func() error { return nil }); err == nil {
		t.Error("Do in a missing namespace: want an error")
	}
}

// hostSysctls snapshots every readable file under /proc/sys/net/{ipv4,ipv6,core}
// (not the per-device conf trees, which other tests' links change).
func hostSysctls(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, dir := range []string{"/proc/sys/net/ipv4", "/proc/sys/net/ipv6", "/proc/sys/net/core"} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue // write-only files such as route/flush
			}
			out[filepath.Join(dir, e.Name())] = string(bytes.TrimSpace(b))
		}
	}
	return out
}

func TestHostSysctlsUnchanged(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	profile := map[string]string{
		"net.ipv4.tcp_tw_reuse":       "1",
		"net.ipv4.tcp_tw_reuse_delay": "50",
		"net.ipv4.tcp_fin_timeout":    "5",
		"net.ipv4.tcp_timestamps":     "0",
		"net.ipv4.tcp_max_tw_buckets": "7",
		"net.ipv4.tcp_keepalive_time": "61",
		"net.ipv4.tcp_tw_recycle":     "1",
		"net.core.somaxconn":          "17",
		"net.core.netdev_max_backlog": "17", // global: absent in a namespace
		"vm.swappiness":               "3",
		"kernel.pid_max":              "40000",
	}
	before := hostSysctls(t)
	if len(before) < 50 {
		t.Fatalf("host snapshot too small: %d keys", len(before))
	}
	vm, _ := os.ReadFile("/proc/sys/vm/swappiness")
	l := newLab(t, Options{Sysctls: profile, ServerSysctls: profile, Ports: 100})
	if l.Skipped["net.core.netdev_max_backlog"] != SkipAbsent || l.Skipped["kernel.pid_max"] != SkipGlobal {
		t.Errorf("Skipped = %v", l.Skipped)
	}
	if len(l.Applied) != 8 {
		t.Errorf("Applied = %v", l.Applied)
	}
	during := hostSysctls(t)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	after := hostSysctls(t)
	for _, snap := range []map[string]string{during, after} {
		for k, v := range before {
			if snap[k] != v {
				t.Errorf("host %s changed: %q -> %q", k, v, snap[k])
			}
		}
	}
	if vm2, _ := os.ReadFile("/proc/sys/vm/swappiness"); !bytes.Equal(vm, vm2) {
		t.Errorf("host vm.swappiness changed: %q -> %q", vm, vm2)
	}
	assertGone(t, l.ID)
}

// running reports whether pid exists and is not a zombie waiting for its
// parent (or init) to reap it.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}
