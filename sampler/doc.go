// Package sampler takes snapshots of TCP socket states and reads the kernel's
// TCP counters, inside the current network namespace or a given one, cheaply
// enough to run every 250 ms next to a load test at 50,000+ sockets.
//
// A snapshot comes from netlink sock_diag, with the wanted states filtered in
// the kernel (idiag_states), or, when netlink is not available, from
// /proc/net/tcp and /proc/net/tcp6. Over netlink the Sampler sends one legacy
// TCPDIAG_GETSOCK request, which the kernel serves as an AF_UNSPEC dump: one
// walk of the socket hash for both families. Kernels without it get one
// SOCK_DIAG_BY_FAMILY (inet_diag_req_v2) dump per family, AF_INET and
// AF_INET6. Both give the same Snapshot: counts per TCP state, per
// destination ip:port, the local ports in use inside ip_local_port_range and
// the remaining lifetime of TIME_WAIT sockets as a histogram. A /proc walk
// counts each socket once even when the kernel, restarting its walk between
// two reads under connection churn, writes some lines twice (procSeen).
//
// Ports are counted by the kernel's rule: a port picked by connect() only has
// to be unique per 4-tuple, so each destination ip:port has its own pool of
// ip_local_port_range ports, while a port taken with bind() (a listener, or
// bind-before-connect) is gone for every destination.
//
// Kernel counters come from /proc/net/sockstat, /proc/net/snmp and
// /proc/net/netstat of the same namespace (ParseSockstat, ParseProtoStats).
//
// The parse functions (ParseInetDiagMsg, ParseProcNetTCP, ParseSockstat,
// ParseProtoStats) are pure; Sampler does the reading. Run is the periodic
// recorder used by `loadcap run`; Watcher backs `loadcap sample`.
package sampler
