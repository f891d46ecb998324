// Package lab builds throw-away network namespaces for one loadcap run, so a
// sysctl profile can be measured without touching the host.
//
// A lab is two network namespaces joined by a veth pair addressed from the
// benchmarking range 198.18.0.0/15 (RFC 2544):
//
//	loadcap-<id>-cli   client namespace, veth lc-<id>-c, 198.18.0.1/24
//	loadcap-<id>-srv   server namespace, veth lc-<id>-s, 198.18.0.2/24,
//	                   198.18.0.3/24, ... one address per target
//
// Every lab uses the same addresses: they live in the lab's own namespaces,
// so labs never see each other or the host. The sysctl profile is written
// into /proc/sys/net from inside the client namespace; keys outside net.* are
// global to the machine and are never written (they are reported as skipped),
// and net.* keys that are not per-namespace do not exist in a child namespace
// and are skipped too.
//
// Creating a lab needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN; without them
// Create returns ErrNotPermitted, which commands turn into exit status 2.
//
// # Firewall
//
// With Options.FirewallIdle set, Create puts a third namespace, a router,
// between client and server, and the two are routed instead of sharing a
// link:
//
//	loadcap-<id>-cli   client, lc-<id>-c, 198.18.0.1/24, route to 198.18.1.0/24 via .254
//	loadcap-<id>-fw    router, lc-<id>-rc 198.18.0.254/24, lc-<id>-rs 198.18.1.254/24
//	loadcap-<id>-srv   server, lc-<id>-s, 198.18.1.2/24, 198.18.1.3/24, ...
//
// The router forwards (net.ipv4.ip_forward=1) through connection tracking:
// nftables (FirewallRules) accepts established flows and new flows that
// start with a SYN and drops everything else without answering, and
// nf_conntrack_tcp_loose=0 with nf_conntrack_tcp_timeout_established set to
// the idle timeout make it forget a flow idle for that long and drop its
// next segments as invalid: the client retransmits into silence, as behind
// the stateful firewall of the incident. All of it is written inside the
// router namespace; the host's netfilter sysctls are left alone.
// FirewallCounters reads the rules' packet counters.
//
// # Running code in a namespace
//
// Do runs a Go function on a locked OS thread that has joined a namespace.
// Sockets created by that function stay in the namespace for their whole
// life, and may be used from any goroutine afterwards; goroutines started by
// the function do not inherit the namespace. Inside Do, read per-namespace
// proc files through /proc/thread-self/net/..., not /proc/net or
// /proc/self/net, which show the namespace of the process's main thread.
// Command runs a child process (for example `loadcap sink`) in a namespace
// through `ip netns exec`.
//
// # Cleanup
//
// Close removes what Create made: it stops the processes started with
// Command (SIGTERM, then SIGKILL), kills by pid any other process left in the
// lab's namespaces, and deletes the namespaces (deleting a namespace deletes
// its veth end). Close is idempotent and safe on every exit path. Callers
// should
//
//	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
//	defer stop()
//	l, err := lab.Create(ctx, opts)
//	if err != nil { ... }
//	defer l.Close()
//
// so that SIGINT and SIGTERM end the run through the deferred Close instead
// of killing the process. Open sockets hold a reference to their namespace:
// close them before Close, or the kernel keeps the (now nameless) namespace
// and its veth until they are closed. Whatever a crash leaves behind is
// removed by Cleanup (`loadcap lab cleanup`), which finds leftovers by the
// loadcap- name prefix and leaves alone the labs of runs still alive.
package lab
