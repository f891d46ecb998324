package capacity

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/loadcap/loadcap/profiles"
)

// Linux defaults of the sysctls the model reads, used for missing keys.
const (
	DefaultPortLow      = 32768
	DefaultPortHigh     = 60999
	DefaultTWReuse      = 2
	DefaultTWReuseDelay = time.Second
	// DefaultMaxTWBuckets is tcp_max_tw_buckets on a host with 262144 ehash
	// entries (the kernel sets it to half the TCP established hash, which
	// scales with memory; 131072 on a 24 GB host).
	DefaultMaxTWBuckets = 131072
)

// TimeWait is how long a socket stays in TIME_WAIT on Linux
// (TCP_TIMEWAIT_LEN); no sysctl changes it.
const TimeWait = 60 * time.Second

// Sysctl keys read by KernelFromSysctl.
const (
	KeyPortRange     = "net.ipv4.ip_local_port_range"
	KeyReservedPorts = "net.ipv4.ip_local_reserved_ports"
	KeyTWReuse       = "net.ipv4.tcp_tw_reuse"
	KeyTWReuseDelay  = "net.ipv4.tcp_tw_reuse_delay"
	KeyTimestamps    = "net.ipv4.tcp_timestamps"
	KeyMaxTWBuckets  = "net.ipv4.tcp_max_tw_buckets"
	KeyKeepAliveTime = "net.ipv4.tcp_keepalive_time"
)

// DefaultKeepAliveTime is the Linux default of tcp_keepalive_time.
const DefaultKeepAliveTime = 7200 * time.Second

// Kernel is the part of the kernel configuration that bounds the local port
// budget of a client.
type Kernel struct {
	// PortLow and PortHigh are ip_local_port_range, inclusive.
	PortLow, PortHigh int
	// ReservedPorts is how many ports of ip_local_reserved_ports fall inside
	// the range; connect() and bind(0) never pick them.
	ReservedPorts int
	// TWReuse is tcp_tw_reuse: 0 off, 1 on, 2 loopback only.
	TWReuse int
	// TWReuseDelay is tcp_tw_reuse_delay: the age a TIME_WAIT socket must
	// reach before connect() may reuse its port.
	TWReuseDelay time.Duration
	// Timestamps is tcp_timestamps != 0; tcp_tw_reuse needs timestamps.
	Timestamps bool
	// MaxTWBuckets is tcp_max_tw_buckets: the most TIME_WAIT sockets the
	// network namespace keeps; closes beyond it skip TIME_WAIT.
	MaxTWBuckets int
	// KeepAliveTime is tcp_keepalive_time: the idle time before the first
	// keepalive probe on a socket with SO_KEEPALIVE and no TCP_KEEPIDLE.
	KeepAliveTime time.Duration
}

// DefaultKernel returns the Linux defaults.
func DefaultKernel() Kernel {
	return Kernel{
		PortLow:       DefaultPortLow,
		PortHigh:      DefaultPortHigh,
		TWReuse:       DefaultTWReuse,
		TWReuseDelay:  DefaultTWReuseDelay,
		Timestamps:    true,
		MaxTWBuckets:  DefaultMaxTWBuckets,
		KeepAliveTime: DefaultKeepAliveTime,
	}
}

// KernelFromSysctl builds a Kernel from sysctl values keyed like
// "net.ipv4.ip_local_port_range" (slash-separated keys are accepted too).
// Missing keys get the Linux defaults; a missing tcp_tw_reuse_delay (kernels
// before it existed) means 1 s.
func KernelFromSysctl(m map[string]string) (Kernel, error) {
	k := DefaultKernel()
	get := func(key string) (string, bool) {
		if v, ok := m[key]; ok {
			return strings.TrimSpace(v), true
		}
		v, ok := m[strings.ReplaceAll(key, ".", "/")]
		return strings.TrimSpace(v), ok
	}
	atoi := func(key, v string) (int, error) {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %q is not an integer", key, v)
		}
		return n, nil
	}
	if v, ok := get(KeyPortRange); ok {
		lo, hi, err := profiles.ParsePortRange(v)
		if err != nil {
			return k, fmt.Errorf("parse %s: %w", KeyPortRange, err)
		}
		k.PortLow, k.PortHigh = lo, hi
	}
	if v, ok := get(KeyReservedPorts); ok {
		n, err := profiles.CountReservedPorts(v, k.PortLow, k.PortHigh)
		if err != nil {
			return k, fmt.Errorf("parse %s: %w", KeyReservedPorts, err)
		}
		k.ReservedPorts = n
	}
	if v, ok := get(KeyTWReuse); ok {
		n, err := atoi(KeyTWReuse, v)
		if err != nil {
			return k, err
		}
		if n < 0 || n > 2 {
			return k, fmt.Errorf("parse %s: %d is not 0, 1 or 2", KeyTWReuse, n)
		}
		k.TWReuse = n
	}
	if v, ok := get(KeyTWReuseDelay); ok {
		n, err := atoi(KeyTWReuseDelay, v)
		if err != nil {
			return k, err
		}
		if n < 1 {
			return k, fmt.Errorf("parse %s: %d ms is below 1", KeyTWReuseDelay, n)
		}
		k.TWReuseDelay = time.Duration(n) * time.Millisecond
	}
	if v, ok := get(KeyTimestamps); ok {
		n, err := atoi(KeyTimestamps, v)
		if err != nil {
			return k, err
		}
		k.Timestamps = n != 0
	}
	if v, ok := get(KeyMaxTWBuckets); ok {
		n, err := atoi(KeyMaxTWBuckets, v)
		if err != nil {
			return k, err
		}
		if n < 0 {
			return k, fmt.Errorf("parse %s: %d is negative", KeyMaxTWBuckets, n)
		}
		k.MaxTWBuckets = n
	}
	if v, ok := get(KeyKeepAliveTime); ok {
		n, err := atoi(KeyKeepAliveTime, v)
		if err != nil {
			return k, err
		}
		if n < 1 {
			return k, fmt.Errorf("parse %s: %d s is below 1", KeyKeepAliveTime, n)
		}
		k.KeepAliveTime = time.Duration(n) * time.Second
	}
	return k, nil
}
