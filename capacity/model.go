package capacity

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/loadcap/loadcap/profiles"
)

// Dial modes and closers, as in package profiles.
const (
	DialConnect    = profiles.DialConnect
	DialBind       = profiles.DialBind
	DialBindNoPort = profiles.DialBindNoPort
	CloserClient   = profiles.CloserClient
	CloserServer   = profiles.CloserServer
)

// Limit identifiers: the short id of the binding constraint in a Prediction.
const (
	// LimitTimeWait: the client closes first and each closed port is held
	// for 60 s in TIME_WAIT.
	LimitTimeWait = "time-wait"
	// LimitTWReuse: connect() reuses TIME_WAIT ports after tcp_tw_reuse_delay.
	LimitTWReuse = "tw-reuse-delay"
	// LimitServerCloses: the server closes first; TIME_WAIT is on the server.
	LimitServerCloses = "server-closes"
	// LimitLinger0: SO_LINGER 0 closes with RST and skips TIME_WAIT.
	LimitLinger0 = "linger0"
	// LimitTWOverflow: tcp_max_tw_buckets is below the TIME_WAIT count that
	// would fill the ports, so TIME_WAIT overflows before ports run out.
	LimitTWOverflow = "tw-overflow"
	// LimitPool: a keep-alive pool that never churns (idle_size =
	// pool_size): no new connections per write, no exhaustion.
	LimitPool = "pool"
	// LimitPoolChurn: a pool that keeps fewer idle connections than it may
	// open, so it closes and reopens connections when concurrency exceeds
	// its idle size; the exhaustion rate depends on the measured new
	// connections per write.
	LimitPoolChurn = "pool-churn"
	// LimitNoPorts: the port range minus reserved ports is empty.
	LimitNoPorts = "no-ports"
)

// Client is the connection behaviour the model needs.
type Client struct {
	// NewConnsPerWrite is how many new connections a write opens per
	// target: 1 for one connection per write, 0 for a pool that never
	// churns, the measured ratio for a churning pool.
	NewConnsPerWrite float64
	// Pooled reports whether connections are reused between writes.
	Pooled bool
	// Closer is CloserClient or CloserServer: who closes first and so holds
	// TIME_WAIT. Empty means CloserClient.
	Closer string
	// DialMode is DialConnect, DialBind or DialBindNoPort. Empty means
	// DialConnect.
	DialMode string
	// Linger0 closes with RST (SO_LINGER 0): no TIME_WAIT anywhere.
	Linger0 bool
	// MayChurn reports a pool that keeps fewer idle connections than it
	// may open (idle_size < pool_size, or an unlimited pool): it churns
	// when concurrent writes exceed IdleSize.
	MayChurn bool
	// IdleSize is the pool's idle connections per target (for the
	// explanation).
	IdleSize int
	// Dispersion is the index of dispersion (variance / mean) of the new
	// connections a churning pool opens per interval, as measured: 1 for
	// openings at independent random moments (Poisson), more when they come
	// in bursts (a stall piles writes up, the pool opens a connection for
	// each and closes all but its idle size). Zero means unknown: 1.
	Dispersion float64
	// ConnLifetime is how long a connection stays open (connect to close);
	// it adds to the hold time of a port. Zero when unknown or negligible.
	ConnLifetime time.Duration
}

// Input is what Predict needs.
type Input struct {
	Kernel Kernel
	Client Client
	// Targets is how many destination ip:port every write goes to (at
	// least 1).
	Targets int
	// Loopback reports whether the targets are on a loopback address, where
	// tcp_tw_reuse=2 applies.
	Loopback bool
}

// Prediction is the model's answer for one Input.
type Prediction struct {
	// PortsAvailable is the number of local ports in one pool: per
	// destination for connect(), shared by all targets for bind.
	PortsAvailable int
	// SharedPool reports whether all targets draw from one pool (bind
	// before connect).
	SharedPool bool
	// HoldS is how long, in seconds, a port stays unusable per new
	// connection (TIME_WAIT or reuse delay, plus the connection lifetime).
	HoldS float64
	// ConnRate is the most new connections per second per target the ports
	// sustain (ports / hold, divided by targets for a shared pool);
	// math.Inf(1) when closed ports are free at once.
	ConnRate float64
	// ExhaustionRate is the write rate per target, in writes/s, at which
	// the ports run out; math.Inf(1) when they never run out.
	ExhaustionRate float64
	// BurstRate, for a pool that churns at random moments, is the write
	// rate per target from which the fluctuation of the ports it holds (the
	// mean plus two standard deviations, see Client.Dispersion) fills them
	// now and then; ExhaustionRate is where the mean fills them. Zero
	// otherwise.
	BurstRate float64
	// Limit is the short id of the binding constraint (Limit* constants).
	Limit string
	// Explanation says in one line why.
	Explanation string
}

// Finite reports whether the ports run out at some write rate.
func (p Prediction) Finite() bool { return !math.IsInf(p.ExhaustionRate, 1) }

// PortsInRange is how many ports connect() and bind(0) can pick from the
// range: the kernel scans an even number of ports (an odd-sized range loses
// its top port), minus the reserved ones.
func (k Kernel) PortsInRange() int {
	n := k.PortHigh - k.PortLow + 1
	if n > 1 {
		n &^= 1
	}
	n -= k.ReservedPorts
	return max(n, 0)
}

// TWReuseApplies reports whether connect() may take over TIME_WAIT ports
// toward a target: tcp_tw_reuse 1, or 2 toward loopback, and timestamps on.
func (k Kernel) TWReuseApplies(loopback bool) bool {
	if !k.Timestamps {
		return false
	}
	return k.TWReuse == 1 || (k.TWReuse == 2 && loopback)
}

// Predict computes the port budget and the exhaustion rate per target.
func Predict(in Input) Prediction {
	targets := max(in.Targets, 1)
	c := in.Client
	k := in.Kernel
	dial := c.DialMode
	if dial == "" {
		dial = DialConnect
	}
	closer := c.Closer
	if closer == "" {
		closer = CloserClient
	}
	p := Prediction{
		PortsAvailable: k.PortsInRange(),
		SharedPool:     dial == DialBind && targets > 1,
	}
	pools := targets // pools that fill at once
	share := 1.0     // targets drawing from one pool
	if dial == DialBind {
		pools, share = 1, float64(targets)
	}
	pool := fmt.Sprintf("%d ports per target", p.PortsAvailable)
	if dial == DialBind {
		pool = fmt.Sprintf("%d ports shared by %d target(s) (bind before connect)", p.PortsAvailable, targets)
	}
	life := c.ConnLifetime.Seconds()
	inf := math.Inf(1)

	if p.PortsAvailable == 0 {
		p.HoldS, p.ConnRate, p.ExhaustionRate, p.Limit = math.Inf(1), 0, 0, LimitNoPorts
		p.Explanation = fmt.Sprintf("no usable ports: range %d-%d minus %d reserved", k.PortLow, k.PortHigh, k.ReservedPorts)
		return p
	}

	// How long a port is held after close, and why.
	var tw float64
	switch {
	case c.Linger0:
		p.Limit = LimitLinger0
	case closer == CloserServer:
		p.Limit = LimitServerCloses
	case dial != DialBind && k.TWReuseApplies(in.Loopback):
		tw = k.TWReuseDelay.Seconds()
		p.Limit = LimitTWReuse
	default:
		tw = TimeWait.Seconds()
		p.Limit = LimitTimeWait
	}
	p.HoldS = tw + life
	if p.HoldS > 0 {
		p.ConnRate = float64(p.PortsAvailable) / p.HoldS / share
	} else {
		p.ConnRate = inf
	}
	churning := c.Pooled && c.NewConnsPerWrite > 0
	disp := c.Dispersion
	if disp <= 0 {
		disp = 1
	}
	if c.NewConnsPerWrite > 0 {
		p.ExhaustionRate = p.ConnRate / c.NewConnsPerWrite
	} else {
		p.ExhaustionRate = inf
	}

	// TIME_WAIT sockets needed to fill every pool, against tcp_max_tw_buckets.
	twNeeded := p.PortsAvailable * pools
	overflow := tw > 0 && k.MaxTWBuckets < twNeeded

	ncpw := c.NewConnsPerWrite
	switch {
	case c.Pooled && ncpw <= 0 && c.MayChurn:
		p.Limit = LimitPoolChurn
		p.Explanation = fmt.Sprintf("pool keeps %d idle connection(s) per target: it churns when concurrent writes exceed %d; exhaustion when churn reaches %s new conns/s per target (%s / %.3g s); measure new_conns_per_write with loadcap run", c.IdleSize, c.IdleSize, fmtRate(p.ConnRate), pool, p.HoldS)
	case c.Pooled && ncpw <= 0:
		p.Limit = LimitPool
		p.Explanation = fmt.Sprintf("keep-alive pool (idle size = pool size) opens no connection per write: no exhaustion from the write rate; churn above %s new conns/s per target would exhaust %s", fmtRate(p.ConnRate), pool)
	case overflow:
		p.ExhaustionRate = inf
		p.Limit = LimitTWOverflow
		over := float64(k.MaxTWBuckets) / tw / float64(targets)
		if ncpw > 0 {
			over /= ncpw
		}
		p.Explanation = fmt.Sprintf("tcp_max_tw_buckets=%d is below the %d TIME_WAIT sockets that would fill %s: above %s writes/s per target TIME_WAIT overflows (TCPTimeWaitOverflow), ports are freed at once and never run out, but late segments are no longer absorbed", k.MaxTWBuckets, twNeeded, pool, fmtRate(over))
	case p.Limit == LimitLinger0:
		p.Explanation = linger0Explanation(p, pool, life)
	case p.Limit == LimitServerCloses:
		p.Explanation = serverClosesExplanation(p, pool, life)
	case p.Limit == LimitTWReuse:
		p.Explanation = fmt.Sprintf("client closes; tcp_tw_reuse=%d with timestamps lets connect() reuse a TIME_WAIT port after %s: %s / %.3g s / %.3g new conns per write = %s writes/s", k.TWReuse, k.TWReuseDelay, pool, p.HoldS, ncpw, fmtRate(p.ExhaustionRate))
	default:
		p.Explanation = fmt.Sprintf("client closes; each port stays in TIME_WAIT for 60 s%s: %s / %.3g s / %.3g new conns per write = %s writes/s", reuseNote(k, in.Loopback, dial), pool, p.HoldS, ncpw, fmtRate(p.ExhaustionRate))
	}
	if churning && p.HoldS > 0 && p.Limit != LimitTWOverflow {
		// A churning pool opens connections at random moments (whenever
		// concurrent writes exceed its idle size), not on a schedule: the
		// ports it holds vary around their mean, with variance D times the
		// mean (D = 1 for a Poisson count, more for bursts). The mean fills
		// the pool at ExhaustionRate; its peaks (two standard deviations)
		// fill it now and then from BurstRate on.
		p.BurstRate = ChurnBudget(p.PortsAvailable, disp) / p.HoldS / share / ncpw
		burst := ""
		if disp != 1 {
			burst = fmt.Sprintf(" (variance %.3g times the mean, measured)", disp)
		}
		p.Explanation += fmt.Sprintf("; a churning pool opens connections at random moments, so the ports it holds vary%s: port errors come now and then from %s writes/s, where the mean held (%.0f) plus two standard deviations fills the %d ports", burst, fmtRate(p.BurstRate), ChurnBudget(p.PortsAvailable, disp), p.PortsAvailable)
	}
	return p
}

// ChurnBudget is the mean number of ports a client that opens connections
// at random moments can hold in a pool of n before the fluctuation (two
// standard deviations) fills the pool, when the count of openings over a
// hold period has variance d times its mean (d = 1: Poisson; d > 1:
// bursts): the mean m with m + 2*sqrt(d*m) = n, that is
// (sqrt(n+d)-sqrt(d))^2. For the default 28,232 ports and d = 1 it is 1 %
// below n (27,898); for a 200-port lab range, 13 % (173.6).
func ChurnBudget(n int, d float64) float64 {
	if d < 0 {
		d = 0
	}
	r := math.Sqrt(float64(n)+d) - math.Sqrt(d)
	return r * r
}

func linger0Explanation(p Prediction, pool string, life float64) string {
	if life > 0 {
		return fmt.Sprintf("SO_LINGER 0: close sends RST, no TIME_WAIT; ports are held only while open (%.3g s): %s writes/s", life, fmtRate(p.ExhaustionRate))
	}
	return fmt.Sprintf("SO_LINGER 0: close sends RST, no TIME_WAIT; ports are held only while connections are open, so the limit is concurrency (%s), not the write rate", pool)
}

func serverClosesExplanation(p Prediction, pool string, life float64) string {
	what := "no client-side TIME_WAIT; the server holds it (its tcp_max_tw_buckets and SYN-to-TIME_WAIT acceptance limit it)"
	if life > 0 {
		return fmt.Sprintf("%s; client ports are held only while open (%.3g s): %s writes/s", what, life, fmtRate(p.ExhaustionRate))
	}
	return fmt.Sprintf("%s; client ports are held only while open, so the limit is concurrency (%s)", what, pool)
}

func reuseNote(k Kernel, loopback bool, dial string) string {
	switch {
	case dial == DialBind && k.TWReuseApplies(loopback):
		return " (tcp_tw_reuse does not help bind(): bind never takes a TIME_WAIT port)"
	case k.TWReuse != 0 && !k.Timestamps:
		return " (tcp_tw_reuse needs tcp_timestamps=1)"
	case k.TWReuse == 2 && !loopback:
		return " (tcp_tw_reuse=2 applies to loopback only)"
	}
	return ""
}

// FormatRate formats a rate in writes/s: "470.5", "28.2k", "inf".
func FormatRate(r float64) string { return fmtRate(r) }

func fmtRate(r float64) string {
	switch {
	case math.IsInf(r, 1):
		return "inf"
	case r >= 10000:
		return fmt.Sprintf("%.1fk", r/1000)
	case r >= 100:
		return fmt.Sprintf("%.1f", r)
	default:
		return fmt.Sprintf("%.3g", r)
	}
}

// ClientFromProfile derives the model's client from a client profile: a
// per-write profile opens one new connection per write; a pool opens none
// until measured (a churning pool's real ratio comes from a run; set
// NewConnsPerWrite from it).
func ClientFromProfile(p *profiles.Client) Client {
	c := Client{
		Pooled:   p.Pooled(),
		Closer:   p.Closer,
		DialMode: p.DialMode,
		Linger0:  p.Linger0,
	}
	if !c.Pooled {
		c.NewConnsPerWrite = 1
	} else {
		c.Closer = CloserClient // the pool closes surplus idle connections
		c.IdleSize = p.IdleSize
		c.MayChurn = p.PoolSize == 0 || p.IdleSize < p.PoolSize
	}
	return c
}

// ChurnLimit returns the write rate at which a churning pool opens connRate
// new connections per second (the most its ports sustain, Prediction.ConnRate)
// and its churn per write there. The churn grows with the rate, steeply near
// the limit (writes pile up, the pool opens a connection for each), so it is
// interpolated in log-log space between two measured points: (rLo, cLo)
// where the ports held and (rHi, cHi) where they ran out. When the churn
// does not grow between them, their geometric mean is used.
func ChurnLimit(rLo, cLo, rHi, cHi, connRate float64) (rate, cpw float64) {
	if cLo <= 0 || cHi <= 0 || rLo <= 0 || rHi <= rLo {
		c := math.Max(cLo, cHi)
		if c <= 0 {
			return math.Inf(1), 0
		}
		return connRate / c, c
	}
	k := math.Log(cHi/cLo) / math.Log(rHi/rLo) // c(r) = cLo (r/rLo)^k
	if k <= 0 {
		c := math.Sqrt(cLo * cHi)
		return connRate / c, c
	}
	rate = rLo * math.Pow(connRate/(cLo*rLo), 1/(1+k))
	return rate, connRate / rate
}

// PeakLimit returns the write rate per target at which a churning pool's
// peaks fill its ports, with the churn per write and its dispersion there.
// The ports a pool holds over a hold time vary around their mean m = share
// x rate x churn x holdS with variance dispersion x m; port errors come when
// the mean plus two standard deviations reaches ports (see ChurnBudget).
// Churn and dispersion grow with the rate, steeply near the limit, so both
// are interpolated in log-log space between two measured steps: (rLo, cLo,
// dLo) where the ports held and (rHi, cHi, dHi) where they ran out. A
// missing (zero) churn or dispersion at one end takes the other end's; a
// missing dispersion at both ends is 1 (openings at independent moments).
// Where the higher step measured less than the lower one, their geometric
// mean is taken for the whole bracket.
// Between two steps consistent with the rule (the low one below it, the
// high one above) the answer lies between them. It returns +Inf when no
// churn was measured.
func PeakLimit(rLo, cLo, dLo, rHi, cHi, dHi float64, ports int, holdS, share float64) (rate, cpw, disp float64) {
	cLo, cHi = nonzero(cLo, cHi), nonzero(cHi, cLo)
	dLo, dHi = nonzero(dLo, dHi), nonzero(dHi, dLo)
	dLo, dHi = nonzero(dLo, 1), nonzero(dHi, 1)
	if cLo <= 0 || holdS <= 0 || ports <= 0 {
		return math.Inf(1), 0, 0
	}
	if share < 1 {
		share = 1
	}
	if rLo <= 0 || rHi <= rLo {
		rLo, rHi = math.Max(rLo, rHi), math.Max(rLo, rHi)
	}
	// Log-log interpolation (and extrapolation) through both ends. Churn
	// and dispersion do not fall as the rate grows: where the steps
	// measured less at the higher rate (noise on a busy machine), their
	// geometric mean holds across the bracket.
	at := func(r, lo, hi float64) float64 {
		if rHi <= rLo || hi <= lo {
			return math.Sqrt(lo * hi)
		}
		k := math.Log(hi/lo) / math.Log(rHi/rLo)
		return lo * math.Pow(r/rLo, k)
	}
	peak := func(r float64) float64 {
		m := share * r * at(r, cLo, cHi) * holdS
		return m + 2*math.Sqrt(at(r, dLo, dHi)*m)
	}
	n := float64(ports)
	// peak grows with r (churn and dispersion do not shrink in any bracket
	// seen; where they do, the bisection still returns a crossing).
	lo, hi := rLo/64, rHi*64
	if lo <= 0 {
		return math.Inf(1), 0, 0
	}
	if peak(lo) >= n {
		return lo, at(lo, cLo, cHi), at(lo, dLo, dHi)
	}
	if peak(hi) < n {
		return math.Inf(1), 0, 0
	}
	for i := 0; i < 100; i++ {
		mid := math.Sqrt(lo * hi)
		if peak(mid) >= n {
			hi = mid
		} else {
			lo = mid
		}
	}
	return lo, at(lo, cLo, cHi), at(lo, dLo, dHi)
}

// PoolBracket is what a find-limit search measured of a churning pool
// around its limit: the step that held (Low) and the one that ran out
// (High), their churn (new connections per write) and dispersion, and the
// mean of the ports held at Low in its steady state (0: unknown; measured
// only over a long hold, where the count describes the pool).
// HeldHigh is the mean of the ports held at High in its steady state, at
// least what the pool held there (0: unknown). RanOut says High failed with
// port errors, not only by falling behind its rate.
type PoolBracket struct {
	Low, CPWLow, DispLow, HeldLow     float64
	High, CPWHigh, DispHigh, HeldHigh float64
	RanOut                            bool
}

// PredictPool predicts a churning pool's limit from its measured bracket:
// the client of in takes the churn and dispersion PeakLimit interpolates
// at the limit, and the prediction's BurstRate is where the peaks of the
// ports held (mean plus two standard deviations) fill the range.
//
// Over a long hold the model's mean is anchored to the ports the steps
// held in their steady state, not to the churn they counted: the churn
// only interpolates between the bracket's ends. At Low the ports held per
// new connection per second (HeldLow / (Low x share x CPWLow)) are
// TIME_WAIT plus the connections the pool keeps open and TIME_WAIT's timer
// rounding, 19 % more than 60 s in one cell (133.6 ports held at 316.25
// writes/s): the excess becomes the connections' lifetime. Less than the
// hold means the step counted openings that hold no port in its steady
// state (a step right after one that ran out opens more while its ports
// drain: 46 s per connection measured): the churn at Low is then the one
// its ports held. At High the churn is at least the one its ports held
// (HeldHigh, a lower bound when the range capped the count: a step that
// ran out), else the measured one scaled like Low's.
//
// The two deviations of the peak rule are an assumption, and the
// dispersion a step measures (variance over mean of ten one-second counts)
// is noisy and misses bursts shorter than its intervals; each end of the
// bracket is a measurement of where the peaks were. So the dispersion at
// High, when it ran out of ports, is at least what puts its mean plus two
// deviations at the range (its peaks reached it), and the one at Low at
// most what keeps them below (they did not). Then the prediction lies
// inside the bracket; the explanation says when either bound was used and
// what the counted dispersion was. It returns the input the prediction was
// made from.
func PredictPool(in Input, b PoolBracket) (Input, Prediction) {
	base := Predict(in) // ports, hold and sharing do not depend on the churn
	share := 1.0
	if base.SharedPool {
		share = float64(max(in.Targets, 1))
	}
	cLo, cHi := b.CPWLow, b.CPWHigh
	if b.HeldLow > 0 && b.CPWLow > 0 && b.Low > 0 {
		if held := b.HeldLow / (b.Low * share * b.CPWLow); held > base.HoldS {
			in.Client.ConnLifetime += time.Duration((held - base.HoldS) * float64(time.Second))
			base = Predict(in)
		} else if base.HoldS > 0 {
			f := held / base.HoldS
			cLo, cHi = cLo*f, cHi*f
		}
	}
	if b.HeldHigh > 0 && b.High > 0 && base.HoldS > 0 {
		cHi = math.Max(cHi, b.HeldHigh/(b.High*share*base.HoldS))
	}
	dLo, dHi, bounds := peakBounds(b, cLo, cHi, base.PortsAvailable, base.HoldS, share)
	_, in.Client.NewConnsPerWrite, in.Client.Dispersion = PeakLimit(b.Low, cLo, dLo, b.High, cHi, dHi,
		base.PortsAvailable, base.HoldS, share)
	p := Predict(in)
	if bounds != "" && p.Explanation != "" {
		p.Explanation += "; " + bounds
	}
	return in, p
}

// peakBounds returns the bracket's dispersions made consistent with what
// its steps showed (see PredictPool), and a sentence naming each bound
// used, empty when none was.
func peakBounds(b PoolBracket, cLo, cHi float64, ports int, holdS, share float64) (dLo, dHi float64, said string) {
	dLo, dHi = nonzero(b.DispLow, b.DispHigh), nonzero(b.DispHigh, b.DispLow)
	dLo, dHi = nonzero(dLo, 1), nonzero(dHi, 1)
	cLo, cHi = nonzero(cLo, cHi), nonzero(cHi, cLo)
	n := float64(ports)
	// d such that m + 2 sqrt(d m) = n.
	fill := func(m float64) float64 { return (n - m) * (n - m) / (4 * m) }
	var notes []string
	if m := share * b.High * cHi * holdS; b.RanOut && m > 0 && m < n {
		if need := fill(m); dHi < need {
			notes = append(notes, fmt.Sprintf("the step at %s writes/s ran out of ports, so its peaks reached the %d ports: its dispersion is taken as %.3g (at least that; %.3g counted), and the limit is at most that rate", fmtRate(b.High), ports, need, dHi))
			dHi = need
		}
	}
	if m := share * b.Low * cLo * holdS; b.Low > 0 && m > 0 && m < n {
		if most := fill(m); dLo > most {
			notes = append(notes, fmt.Sprintf("the step at %s writes/s held, so its peaks stayed below the %d ports: its dispersion is taken as %.3g (at most that; %.3g counted)", fmtRate(b.Low), ports, most, dLo))
			dLo = most
		}
	}
	return dLo, dHi, strings.Join(notes, "; ")
}
