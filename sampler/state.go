package sampler

import "math/bits"

// State is a TCP socket state, numbered as in the kernel (include/net/tcp_states.h).
type State uint8

// TCP states. NewSynRecv is a request socket; the kernel reports it as
// SynRecv in dumps. BoundInactive is a socket bound to a port that neither
// listens nor is connected (dumped by netlink only when asked for, since 6.5).
const (
	Established   State = 1
	SynSent       State = 2
	SynRecv       State = 3
	FinWait1      State = 4
	FinWait2      State = 5
	TimeWait      State = 6
	Close         State = 7
	CloseWait     State = 8
	LastAck       State = 9
	Listen        State = 10
	Closing       State = 11
	NewSynRecv    State = 12
	BoundInactive State = 13

	numStates = 14
)

var stateNames = [numStates]string{
	"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
	"NEW_SYN_RECV", "BOUND_INACTIVE",
}

// String returns the state name as netstat prints it (ESTABLISHED,
// TIME_WAIT, FIN_WAIT1, ...), or "UNKNOWN".
func (s State) String() string {
	if s == 0 || int(s) >= numStates {
		return "UNKNOWN"
	}
	return stateNames[s]
}

// ParseState returns the State named name (as String prints it).
func ParseState(name string) (State, bool) {
	for i, n := range stateNames {
		if i > 0 && n == name {
			return State(i), true
		}
	}
	return 0, false
}

// StateSet is a set of states as a bitmask, bit n for State n: the layout of
// inet_diag_req_v2.idiag_states.
type StateSet uint32

// AllStates is every state that /proc/net/tcp lists and a plain netlink dump
// returns (ESTABLISHED through CLOSING, request sockets as SYN_RECV). It
// leaves out BOUND_INACTIVE, which /proc does not show.
const AllStates StateSet = (1<<NewSynRecv)<<1 - 2

// StatesOf returns the set holding the given states.
func StatesOf(states ...State) StateSet {
	var s StateSet
	for _, st := range states {
		s |= 1 << st
	}
	return s
}

// Has reports whether st is in the set.
func (s StateSet) Has(st State) bool { return s&(1<<st) != 0 }

// kernelMask is the idiag_states value to send: request sockets are dumped
// under NEW_SYN_RECV but reported as SYN_RECV, so asking for SYN_RECV asks
// for both (as ss does).
func (s StateSet) kernelMask() uint32 {
	if s == 0 {
		s = AllStates
	}
	if s.Has(SynRecv) {
		s |= 1 << NewSynRecv
	}
	return uint32(s)
}

// StateCounts counts sockets per State, indexed by State.
type StateCounts [numStates]int

// Total is the number of sockets counted.
func (c *StateCounts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// Map returns the non-zero counts keyed by state name.
func (c *StateCounts) Map() map[string]int {
	m := make(map[string]int, 4)
	for i, v := range c {
		if v != 0 {
			m[State(i).String()] = v
		}
	}
	return m
}

// Add adds o to c.
func (c *StateCounts) Add(o *StateCounts) {
	for i := range c {
		c[i] += o[i]
	}
}

// portSet is a set of 16-bit ports.
type portSet [65536 / 64]uint64

func (p *portSet) add(port uint16) { p[port>>6] |= 1 << (port & 63) }

func (p *portSet) has(port uint16) bool { return p[port>>6]&(1<<(port&63)) != 0 }

// countIn returns how many ports of p, or of p|q when q is not nil, lie in [lo, hi].
func (p *portSet) countIn(q *portSet, lo, hi uint16) int {
	n := 0
	for w := int(lo >> 6); w <= int(hi>>6); w++ {
		v := p[w]
		if q != nil {
			v |= q[w]
		}
		if w == int(lo>>6) {
			v &^= (1 << (lo & 63)) - 1
		}
		if w == int(hi>>6) && hi&63 != 63 {
			v &= (1 << (hi&63 + 1)) - 1
		}
		n += bits.OnesCount64(v)
	}
	return n
}
