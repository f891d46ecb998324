// Package capacity is the ephemeral-port capacity model: from the sysctls in
// force (port range, reserved ports, tcp_tw_reuse, tcp_tw_reuse_delay,
// tcp_timestamps, tcp_max_tw_buckets), the client's connection behaviour and
// the number of targets, it predicts the write rate per target at which a
// client host runs out of local ports, and names the binding constraint.
//
// The package is pure: it does no I/O. Callers read sysctls (for example with
// profiles.ReadSysctls) and pass them to KernelFromSysctl.
//
// The model, in one paragraph: a client that closes a connection first keeps
// its local port in TIME_WAIT for 60 s (TCP_TIMEWAIT_LEN, not tunable;
// tcp_fin_timeout does not change it). With tcp_tw_reuse applicable (1, or 2
// toward loopback) and TCP timestamps on, connect() may take over a TIME_WAIT
// port once it is older than tcp_tw_reuse_delay (1 s before the sysctl
// existed). Plain connect() keeps a port pool per destination ip:port;
// bind-before-connect shares one pool across all destinations and never takes
// a TIME_WAIT port. The exhaustion rate per target, in writes/s, is
//
//	ports per pool / hold time / new connections per write / targets sharing the pool
//
// unless tcp_max_tw_buckets is below the TIME_WAIT count needed to fill the
// pools, in which case TIME_WAIT overflows and the ports never run out.
package capacity
