package sampler

import (
	"net/netip"
	"time"

	"github.com/loadcap/loadcap/capacity"
)

// Socket is one TCP socket as a dump or /proc/net/tcp shows it.
type Socket struct {
	// State is the TCP state; request sockets are SynRecv.
	State State
	// Local and Remote are the socket's addresses; IPv4-mapped IPv6
	// addresses are kept as the kernel reports them.
	Local, Remote netip.AddrPort
	// Expires is the time left on the socket's timer, for TIME_WAIT the
	// remaining lifetime. Zero when no timer is pending.
	Expires time.Duration
	// UID and Inode are the owner and the socket inode (0 for TIME_WAIT and
	// request sockets).
	UID, Inode uint32
	// Timer is the kind of timer pending (idiag_timer, the "tr" column of
	// /proc/net/tcp): TimerNone, TimerRetransmit, TimerKeepalive,
	// TimerTimeWait or TimerProbe.
	Timer uint8
}

// Kinds of Socket.Timer, as the kernel numbers them.
const (
	TimerNone       = 0
	TimerRetransmit = 1 // data or SYN not acknowledged: a dead flow retransmits
	TimerKeepalive  = 2 // the keepalive (or another sk) timer is armed
	TimerTimeWait   = 3
	TimerProbe      = 4 // zero-window probe
)

// TimerCounts counts established matched sockets by pending timer: which
// connections are probing (keepalive) and which are stuck retransmitting
// into a flow nobody answers.
type TimerCounts struct {
	Keepalive, Retransmit, Probe int
}

// Map returns the non-zero counts keyed "keepalive", "retransmit", "probe".
func (c TimerCounts) Map() map[string]int {
	m := map[string]int{}
	if c.Keepalive > 0 {
		m["keepalive"] = c.Keepalive
	}
	if c.Retransmit > 0 {
		m["retransmit"] = c.Retransmit
	}
	if c.Probe > 0 {
		m["probe"] = c.Probe
	}
	return m
}

// Match selects the sockets counted in detail in a Snapshot. A zero field
// matches anything.
type Match struct {
	// Name labels the match in Snapshot.ByMatch.
	Name string
	// Dst is the remote ip:port (the client's view). An invalid or
	// unspecified address matches any address; port 0 any port.
	Dst netip.AddrPort
	// LocalPort is the local port (a server's view).
	LocalPort uint16
	// ReuseDelay, when positive, has the snapshot count in
	// Snapshot.BlockedByMatch the sockets of this match whose port a
	// connect() toward it cannot take: every state but TIME_WAIT, and
	// TIME_WAIT sockets younger than ReuseDelay (tcp_tw_reuse_delay, when
	// tcp_tw_reuse applies). A socket's age in TIME_WAIT is
	// capacity.TimeWait (TCP_TIMEWAIT_LEN) minus its remaining lifetime.
	ReuseDelay time.Duration
}

func (m *Match) matches(s *Socket) bool {
	if p := m.Dst.Port(); p != 0 && s.Remote.Port() != p {
		return false
	}
	if m.LocalPort != 0 && s.Local.Port() != m.LocalPort {
		return false
	}
	if a := m.Dst.Addr(); a.IsValid() && !a.IsUnspecified() && s.Remote.Addr().Unmap() != a.Unmap() {
		return false
	}
	return true
}

// Query says what a snapshot counts.
type Query struct {
	// States is the set of states to dump (filtered in the kernel over
	// netlink); zero means AllStates.
	States StateSet
	// Matches selects the sockets counted per destination, per match and
	// for ports in use. Nil counts every socket as matched.
	Matches []Match
}

// TWBucketWidth is the width of a TIME_WAIT histogram bucket.
const TWBucketWidth = 5 * time.Second

// TWBuckets is the number of TIME_WAIT histogram buckets: 12 buckets of 5 s
// cover the 60 s TIME_WAIT, a 13th holds anything longer.
const TWBuckets = 13

// TWHistogram is the distribution of the remaining lifetime of TIME_WAIT
// sockets: bucket i counts sockets expiring in [i*5 s, (i+1)*5 s), the last
// bucket 60 s and more.
type TWHistogram [TWBuckets]int

func (h *TWHistogram) add(d time.Duration) {
	i := int(d / TWBucketWidth)
	if i < 0 {
		i = 0
	}
	if i >= TWBuckets {
		i = TWBuckets - 1
	}
	h[i]++
}

// Count is the number of sockets in the histogram.
func (h *TWHistogram) Count() int {
	n := 0
	for _, v := range h {
		n += v
	}
	return n
}

// PortRange is ip_local_port_range, inclusive.
type PortRange struct{ Low, High uint16 }

// Snapshot is the socket table of one network namespace at one moment.
type Snapshot struct {
	// Time is when the snapshot was taken.
	Time time.Time
	// Source is "netlink" or "proc".
	Source string
	// All counts every dumped socket per state.
	All StateCounts
	// Matched counts the sockets selected by the query's matches.
	Matched StateCounts
	// ByMatch counts matched sockets per Match.Name.
	ByMatch map[string]*StateCounts
	// BlockedByMatch counts, per Match.Name of the matches with a
	// ReuseDelay, the sockets whose port connect() cannot reuse toward that
	// match: all but the TIME_WAIT sockets older than the reuse delay.
	BlockedByMatch map[string]int
	// ByDestination counts matched sockets per remote ip:port (IPv4-mapped
	// addresses unmapped). For a match on LocalPort only, the key is the
	// local ip:port instead: a server's view.
	ByDestination map[netip.AddrPort]*StateCounts
	// PortRange is the ip_local_port_range the ports below are counted in.
	PortRange PortRange
	// PortsInUse is the number of distinct local ports inside PortRange held
	// by matched sockets or taken by a listener (bind() ports are taken for
	// every destination).
	PortsInUse int
	// PortsInUseByDestination is PortsInUse per ByDestination key: the pool
	// connect() draws from toward that destination.
	PortsInUseByDestination map[netip.AddrPort]int
	// BoundPorts is the number of listening ports inside PortRange.
	BoundPorts int
	// TimeWait is the remaining lifetime of the matched TIME_WAIT sockets.
	TimeWait TWHistogram
	// TimeWaitByDestination is TimeWait per ByDestination key, for the
	// destinations that have TIME_WAIT sockets.
	TimeWaitByDestination map[netip.AddrPort]*TWHistogram
	// Timers counts the matched ESTABLISHED sockets by pending timer.
	Timers TimerCounts
}

// tally builds a Snapshot from sockets, one at a time. It is on the hot
// path (once per socket), so destinations are kept in a slice searched
// linearly while there are few, with a map index beyond that.
type tally struct {
	q       Query
	states  StateSet
	snap    *Snapshot
	byMatch []*StateCounts // per q.Matches index
	blocked []int          // per q.Matches index, see Match.ReuseDelay
	used    portSet
	listen  portSet
	dests   []destTally
	index   map[netip.AddrPort]int // into dests, once there are many
	last    int                    // dests index of the previous socket
	byLocal bool
}

// destTally is what a snapshot keeps per destination.
type destTally struct {
	key    netip.AddrPort
	counts *StateCounts
	// few are the first distinct ports in range (nfew of them); ports is
	// allocated (8 KiB) only when a destination holds more, so that the
	// many one-socket destinations of a server's view stay cheap.
	few   [8]uint16
	nfew  int
	ports *portSet
	tw    *TWHistogram // allocated on the first TIME_WAIT socket
}

// addPort records a local port in range held toward the destination.
func (d *destTally) addPort(p uint16) {
	if d.ports != nil {
		d.ports.add(p)
		return
	}
	for _, q := range d.few[:d.nfew] {
		if q == p {
			return
		}
	}
	if d.nfew < len(d.few) {
		d.few[d.nfew] = p
		d.nfew++
		return
	}
	d.ports = new(portSet)
	for _, q := range d.few {
		d.ports.add(q)
	}
	d.ports.add(p)
}

// portsIn returns how many ports the destination holds, with the listening
// ports (which every destination's pool loses) counted once; ok is false
// when it holds none in range.
func (d *destTally) portsIn(listen *portSet, listening int, lo, hi uint16) (n int, ok bool) {
	if d.ports != nil {
		return d.ports.countIn(listen, lo, hi), true
	}
	if d.nfew == 0 {
		return 0, false
	}
	n = listening
	for _, p := range d.few[:d.nfew] {
		if !listen.has(p) {
			n++
		}
	}
	return n, true
}

// linearDests is how many destinations are searched without a map.
const linearDests = 8

func newTally(q Query, pr PortRange, source string) *tally {
	t := &tally{
		q:      q,
		states: q.States,
		snap: &Snapshot{
			Time:          time.Now(),
			Source:        source,
			PortRange:     pr,
			ByMatch:       make(map[string]*StateCounts, len(q.Matches)),
			ByDestination: make(map[netip.AddrPort]*StateCounts),
		},
	}
	if t.states == 0 {
		t.states = AllStates
	}
	t.byLocal = len(q.Matches) > 0
	for _, m := range q.Matches {
		if m.Dst.Port() != 0 || m.LocalPort == 0 {
			t.byLocal = false
		}
		c := t.snap.ByMatch[m.Name]
		if c == nil {
			c = new(StateCounts)
			t.snap.ByMatch[m.Name] = c
		}
		t.byMatch = append(t.byMatch, c)
	}
	t.blocked = make([]int, len(q.Matches))
	return t
}

func (t *tally) dest(key netip.AddrPort) *destTally {
	if t.last < len(t.dests) && t.dests[t.last].key == key {
		return &t.dests[t.last]
	}
	i := -1
	if t.index != nil {
		if j, ok := t.index[key]; ok {
			i = j
		}
	} else {
		for j := range t.dests {
			if t.dests[j].key == key {
				i = j
				break
			}
		}
	}
	if i < 0 {
		i = len(t.dests)
		t.dests = append(t.dests, destTally{key: key, counts: new(StateCounts)})
		if t.index != nil {
			t.index[key] = i
		} else if len(t.dests) > linearDests {
			t.index = make(map[netip.AddrPort]int, 2*len(t.dests))
			for j, d := range t.dests {
				t.index[d.key] = j
			}
		}
	}
	t.last = i
	return &t.dests[i]
}

func (t *tally) add(s *Socket) {
	st := s.State
	if st == NewSynRecv {
		st = SynRecv
	}
	if int(st) >= numStates || !t.states.Has(st) {
		return
	}
	snap := t.snap
	snap.All[st]++
	lport := s.Local.Port()
	if st == Listen {
		t.listen.add(lport)
	}
	matched := len(t.q.Matches) == 0
	for i := range t.q.Matches {
		if m := &t.q.Matches[i]; m.matches(s) {
			matched = true
			t.byMatch[i][st]++
			if m.ReuseDelay > 0 && (st != TimeWait || s.Expires > capacity.TimeWait-m.ReuseDelay) {
				t.blocked[i]++
			}
		}
	}
	if !matched {
		return
	}
	snap.Matched[st]++
	switch st {
	case TimeWait:
		snap.TimeWait.add(s.Expires)
	case Established:
		switch s.Timer {
		case TimerKeepalive:
			snap.Timers.Keepalive++
		case TimerRetransmit:
			snap.Timers.Retransmit++
		case TimerProbe:
			snap.Timers.Probe++
		}
	}
	key := netip.AddrPortFrom(s.Remote.Addr().Unmap(), s.Remote.Port())
	if t.byLocal {
		key = netip.AddrPortFrom(s.Local.Addr().Unmap(), lport)
	}
	d := t.dest(key)
	d.counts[st]++
	if st == TimeWait {
		if d.tw == nil {
			d.tw = new(TWHistogram)
		}
		d.tw.add(s.Expires)
	}
	if st == Listen || lport < snap.PortRange.Low || lport > snap.PortRange.High {
		return
	}
	t.used.add(lport)
	d.addPort(lport)
}

func (t *tally) finish() *Snapshot {
	snap := t.snap
	for i, m := range t.q.Matches {
		if m.ReuseDelay <= 0 {
			continue
		}
		if snap.BlockedByMatch == nil {
			snap.BlockedByMatch = make(map[string]int, len(t.q.Matches))
		}
		snap.BlockedByMatch[m.Name] += t.blocked[i]
	}
	for _, d := range t.dests {
		snap.ByDestination[d.key] = d.counts
		if d.tw != nil {
			if snap.TimeWaitByDestination == nil {
				snap.TimeWaitByDestination = make(map[netip.AddrPort]*TWHistogram)
			}
			snap.TimeWaitByDestination[d.key] = d.tw
		}
	}
	lo, hi := snap.PortRange.Low, snap.PortRange.High
	if lo == 0 || hi < lo {
		return snap
	}
	snap.BoundPorts = t.listen.countIn(nil, lo, hi)
	snap.PortsInUse = t.used.countIn(&t.listen, lo, hi)
	snap.PortsInUseByDestination = make(map[netip.AddrPort]int, len(t.dests))
	for i := range t.dests {
		if n, ok := t.dests[i].portsIn(&t.listen, snap.BoundPorts, lo, hi); ok {
			snap.PortsInUseByDestination[t.dests[i].key] = n
		}
	}
	return snap
}
