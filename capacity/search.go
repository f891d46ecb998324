package capacity

import (
	"errors"
	"math"
)

// Phases of a find-limit step, as recorded in a result's steps[].
const (
	PhaseConfirmLow  = "confirm-low"
	PhaseConfirmHigh = "confirm-high"
	PhaseSearch      = "search"
	// PhaseScout is a short step that measures a churning pool's churn at a
	// rate: it holds fewer ports than the budget, so it says nothing of the
	// limit, only of the churn the model needs.
	PhaseScout = "scout"
)

// Search defaults (SearchPlan zero values).
const (
	// DefaultMargin places the two confirming steps at 0.9x and 1.1x of the
	// estimate.
	DefaultMargin = 0.10
	// DefaultTolerance: a churning pool's bracket is refined until its high
	// end is at most 6 % above its low end, so the limit (their geometric
	// mean) is known within 3 %.
	DefaultTolerance = 0.06
	// DefaultMaxSteps bounds the steps of one search, scouts not counted:
	// a churning pool on a busy machine needed 8 to narrow a bracket of
	// 2.75x to 1.24x (2 targets, linux-default), so 10.
	DefaultMaxSteps = 10
	// MaxScouts bounds the scouting steps.
	MaxScouts = 6
)

// ProbeResult is what one find-limit step showed.
type ProbeResult struct {
	// Failed reports port errors once the step reached its steady state.
	Failed bool
	// ConnsPerWrite is the new connections per successful write the step
	// measured (0: unknown).
	ConnsPerWrite float64
	// Dispersion is the variance / mean of the new connections per
	// interval the step measured (0: unknown).
	Dispersion float64
	// Held is the mean of the ports the step held in its steady state,
	// when that count says what the pool holds (0: unknown).
	Held float64
	// RanOut reports that the step failed with port errors, not only by
	// falling behind its rate: its peaks reached the range.
	RanOut bool
}

// Probe runs one step at rate writes/s per target and reports what it
// showed; phase is one of the Phase* constants. A non-nil error stops the
// search (the result so far is still returned).
type Probe func(rate float64, phase string) (ProbeResult, error)

// SearchPlan is what the search knows before its first step: the budget and
// hold measured by traffic (a burst and a probe) and the client's churn.
type SearchPlan struct {
	// ConnRate is the new connections per second per target the ports
	// sustain: the measured budget over the measured hold, as the model
	// takes it (see ChurnConnRate for a churning pool).
	ConnRate float64
	// ConnsPerWrite is the new connections per write known before the
	// first step (the burst's): 1 for a client that opens one per write.
	ConnsPerWrite float64
	// Churns reports a client whose new connections per write depend on the
	// rate (a churning pool): the search then steers each step by the churn
	// the steps measured and refines the bracket to Tolerance. Otherwise two
	// confirming steps around ConnRate / ConnsPerWrite decide.
	Churns bool
	// FailRate is a rate known to run out (the burst's): no step goes past
	// it (0: no fence).
	FailRate float64
	// Margin places the confirming steps at (1-Margin) and (1+Margin) of the
	// estimate (0: DefaultMargin).
	Margin float64
	// Tolerance is the bracket width, high/low - 1, a churning pool's search
	// stops at (0: DefaultTolerance).
	Tolerance float64
	// MaxSteps bounds the steps, scouts not counted (0: DefaultMaxSteps).
	MaxSteps int
	// Ports, HoldS and Share, when Ports is set, let the search place a
	// churning pool's steps by PeakLimit (the churn's peaks, with the
	// dispersion the steps measured) rather than by the mean churn: the
	// ports per pool, the hold in seconds, and the targets sharing a pool.
	Ports int
	HoldS float64
	Share float64
	// Scout, for a churning pool whose steps are long (a 60 s hold), first
	// measures the churn with short steps (PhaseScout) at rising rates until
	// the model can place the confirming steps around the limit.
	Scout bool
}

// SearchResult is the bracket the steps found.
type SearchResult struct {
	// Rate is the limit in writes/s per target: the estimate when both
	// confirming steps agreed with it, else the geometric mean of the
	// bracket; 0 when the steps did not bracket it.
	Rate float64
	// Low is the highest rate without port errors below High, High the
	// lowest rate with them (0: none).
	Low, High float64
	// CPWLow and CPWHigh are the new connections per write measured at Low
	// and High, DispLow and DispHigh the dispersion of their openings.
	CPWLow, CPWHigh   float64
	DispLow, DispHigh float64
	// HeldLow is the mean of the ports held at Low (0: unknown), HeldHigh
	// at High (0: unknown; a lower bound when the range capped it).
	HeldLow, HeldHigh float64
	// RanOutHigh reports that High failed with port errors (see
	// ProbeResult.RanOut).
	RanOutHigh bool
	// Estimate is the rate the confirming steps were placed around.
	Estimate float64
	// Steps is how many long steps ran (confirm and search), Scouts how
	// many short scouting steps ran before them.
	Steps, Scouts int
}

// Bracketed reports whether a rate without and a higher rate with port
// errors were found.
func (r SearchResult) Bracketed() bool { return r.Low > 0 && r.High > r.Low }

// ErrBadPlan is returned by Search for a plan it cannot start from.
var ErrBadPlan = errors.New("find-limit: no estimate to start from (budget, hold or churn unknown)")

// Search places the find-limit steps and returns the bracket. It is pure:
// every measurement comes through probe.
//
// The first two steps confirm the estimate ConnRate / ConnsPerWrite at
// (1-Margin) and (1+Margin). For a client with a fixed churn that is all:
// the lower must hold and the higher must run out. When they disagree, or
// the churn depends on the rate, each further step is placed where the
// model, fed with the churn the steps measured, puts the limit
// (ChurnLimit between the bracket's ends), as a pair just around it when
// it lies inside the bracket, else a single step bounded away from the
// bracket's ends; the search stops when high/low <= 1 + Tolerance or after
// MaxSteps steps.
//
// With Scout, a churning pool's search first measures its churn with short
// steps at rising rates (see scout), and its confirming steps are the pair
// just around the limit the model predicts from that churn: when the model
// is right, two long steps close the bracket.
func Search(p SearchPlan, probe Probe) (SearchResult, error) {
	margin, tol := nonzero(p.Margin, DefaultMargin), nonzero(p.Tolerance, DefaultTolerance)
	maxSteps := p.MaxSteps
	if maxSteps <= 0 {
		maxSteps = DefaultMaxSteps
	}
	var res SearchResult
	if !(p.ConnRate > 0) || math.IsInf(p.ConnRate, 0) || !(p.ConnsPerWrite > 0) {
		return res, ErrBadPlan
	}
	res.Estimate = p.ConnRate / p.ConnsPerWrite
	var points, churn []point // churn: scouts, whose churn only counts
	record := func(rate float64, phase string) error {
		r, err := probe(rate, phase)
		res.Steps++
		if err != nil {
			return err
		}
		points = append(points, point{rate, r})
		res.bracket(points)
		return nil
	}
	fence, fenceRuns := p.FailRate, false
	switch {
	case p.Churns && p.Scout:
		var scouts []point
		pred, ranOut, err := scout(p, res.Estimate, func(rate float64) (ProbeResult, error) {
			r, err := probe(rate, PhaseScout)
			res.Scouts++
			if err == nil {
				scouts = append(scouts, point{rate, r})
			}
			return r, err
		})
		if err != nil {
			return res, err
		}
		if ranOut > 0 && (fence <= 0 || ranOut < fence) {
			// A scout ran out of ports within its short step: a long step
			// at that rate holds at least as many ports, so no step goes
			// past it, and one at it ends a climb that found nothing
			// failing below it.
			fence, fenceRuns = ranOut, true
		}
		half := math.Pow(1+tol, 0.45)
		if p.FailRate > 0 && pred*half > p.FailRate {
			pred = p.FailRate / half // no step past the fence
		}
		res.Estimate = pred
		// The scouts' churn is the pool's, but they ran too briefly to
		// bracket the limit: only their churn feeds the model.
		churn = scouts
		if err := record(pred/half, PhaseConfirmLow); err != nil {
			return res, err
		}
		if err := record(pred*half, PhaseConfirmHigh); err != nil {
			return res, err
		}
	case p.Churns:
		// The burst's churn is a saturated pool's: the estimate is low, and
		// a step there measures the churn the model needs.
		if err := record(res.Estimate, PhaseSearch); err != nil {
			return res, err
		}
	default:
		if err := record(res.Estimate*(1-margin), PhaseConfirmLow); err != nil {
			return res, err
		}
		if err := record(res.Estimate*(1+margin), PhaseConfirmHigh); err != nil {
			return res, err
		}
		if res.Low == res.Estimate*(1-margin) && res.High == res.Estimate*(1+margin) {
			res.Rate = res.Estimate
			return res, nil
		}
	}
	for res.Steps < maxSteps {
		lo, hi := res.Low, res.High
		if lo > 0 && hi > 0 && hi/lo <= 1+tol {
			break
		}
		next := nextRates(p, res, append(churn[:len(churn):len(churn)], points...), fence, fenceRuns, tol, maxSteps-res.Steps)
		if len(next) == 0 {
			break
		}
		for _, r := range next {
			if err := record(r, PhaseSearch); err != nil {
				return res, err
			}
		}
		if fenceRuns && res.Low >= fence {
			// A long step held where a scout ran out: the scout's 12 s
			// caught a transient (a stall that made the pool churn), not
			// the limit. Its fence goes; the burst's stays.
			fence, fenceRuns = p.FailRate, false
		}
	}
	if res.Bracketed() {
		res.Rate = math.Sqrt(res.Low * res.High)
	}
	return res, nil
}

type point struct {
	rate float64
	ProbeResult
}

// bracket sets High to the lowest failing rate and Low to the highest rate
// that held below it: noise near the limit can make a rate hold above one
// that failed, and that one does not narrow the bracket.
func (r *SearchResult) bracket(points []point) {
	r.Low, r.High, r.CPWLow, r.CPWHigh, r.DispLow, r.DispHigh, r.HeldLow, r.HeldHigh = 0, 0, 0, 0, 0, 0, 0, 0
	r.RanOutHigh = false
	for _, p := range points {
		if p.Failed && (r.High == 0 || p.rate < r.High) {
			r.High, r.CPWHigh, r.DispHigh, r.HeldHigh, r.RanOutHigh = p.rate, p.ConnsPerWrite, p.Dispersion, p.Held, p.RanOut
		}
	}
	for _, p := range points {
		if !p.Failed && (r.High == 0 || p.rate < r.High) && p.rate > r.Low {
			r.Low, r.CPWLow, r.DispLow, r.HeldLow = p.rate, p.ConnsPerWrite, p.Dispersion, p.Held
		}
	}
}

// scout runs short steps from rate up, each at most 8 times the last, until
// two of them measured a churn and the churn curve through them puts the
// limit (predictLimit) at most twice above the highest, a scout runs out of
// ports, or MaxScouts ran; it returns the predicted limit and the rate of
// the scout that ran out (0: none). A scout that ran out puts the limit
// below it: the prediction is kept between the last scout that held and it
// (their geometric mean when the churn curve put it elsewhere).
func scout(p SearchPlan, rate float64, probe func(float64) (ProbeResult, error)) (float64, float64, error) {
	var pts []point
	churned := 0
	pred := math.Inf(1)
	held, ranOut := 0.0, 0.0 // the highest scout rate that held, the one that ran out
	for i := 0; i < MaxScouts; i++ {
		r, err := probe(rate)
		if err != nil {
			return 0, 0, err
		}
		if r.Failed {
			ranOut = rate
			// So far past the limit that a short step filled the ports: the
			// limit lies between the last scout that held and this one.
			if !(pred > held && pred < rate) {
				pred = rate / 2
				if held > 0 {
					pred = math.Sqrt(held * rate)
				}
			}
			break
		}
		held = rate
		pts = append(pts, point{rate, r})
		if r.ConnsPerWrite > 0 {
			churned++
		}
		pred = predictLimit(p.ConnRate, SearchResult{Low: rate}, pts)
		if churned >= 2 && pred <= 2*rate {
			break // the churn curve is fitted near the limit
		}
		// With one churn measured, pred is an upper bound (the churn only
		// grows): a scout there measures the churn's growth.
		rate = clamp(pred, 1.25*rate, 8*rate)
		if p.FailRate > 0 && rate >= p.FailRate {
			break // the fence, a rate known to fail, is no scout
		}
	}
	if math.IsInf(pred, 1) {
		pred = rate
	}
	return pred, ranOut, nil
}

// nextRates places the next step(s) of the search from the steps so far.
// No step goes past fence (0: none), a rate known to run out; when
// fenceRuns (a short scout ran out there, not a step) and every step held
// up to it, one step runs at it.
func nextRates(p SearchPlan, res SearchResult, points []point, fence float64, fenceRuns bool, tol float64, left int) []float64 {
	lo, hi := res.Low, res.High
	if lo == 0 && hi == 0 {
		return nil
	}
	if lo == 0 {
		// Nothing held: where the failing step's churn fills the ports, at
		// least an eighth of the failing rate, at most half of it (the
		// estimate missed: halving finds a rate that holds in few steps).
		pred := p.ConnRate / nonzero(res.CPWHigh, p.ConnsPerWrite)
		return []float64{clamp(pred, hi/8, hi/2)}
	}
	pred := predictLimit(p.ConnRate, res, points)
	if hi == 0 {
		// Nothing failed yet: up to 4 times the rate that held, never past
		// the fence (a rate known to fail).
		top := 4 * lo
		if fence > 0 {
			if lo*(1+2*tol) >= fence {
				if fenceRuns && lo < fence {
					return []float64{fence} // the scout's rate, as a step
				}
				return nil // held up to the fence: nothing left to search
			}
			top = math.Min(top, fence)
		}
		return []float64{clamp(pred, lo*(1+2*tol), top)}
	}
	if p.Ports > 0 && res.CPWLow > 0 && res.CPWHigh > 0 {
		pred, _, _ = PeakLimit(lo, res.CPWLow, res.DispLow, hi, res.CPWHigh, res.DispHigh, p.Ports, p.HoldS, p.Share)
	}
	span := math.Log(hi / lo)
	if hi/lo > 1.5 {
		// A wide bracket: the churn between its ends is not a power law
		// (it has a cliff), so the prediction is kept in the bracket's
		// lower half (in log space), and each step at least halves it when
		// it runs out and cuts a quarter when it holds.
		return []float64{clamp(pred, lo*math.Exp(span/4), lo*math.Exp(span/2))}
	}
	// A pair just around the prediction closes the bracket in two steps when
	// the prediction is right.
	half := math.Pow(1+tol, 0.45)
	if left >= 2 && pred/half > lo*math.Pow(1+tol, 0.2) && pred*half < hi/math.Pow(1+tol, 0.2) {
		return []float64{pred / half, pred * half}
	}
	// Else one step, kept a fifth of the bracket (in log space) from its ends.
	return []float64{clamp(pred, lo*math.Exp(span/5), lo*math.Exp(4*span/5))}
}

// predictLimit is where the churn the steps measured makes the new
// connections per second reach connRate. The churn of steps that held is
// the pool's own; a step that ran out of ports has its churn capped by the
// ports. So the churn curve is the power law through the two highest rates
// that held, when there are two; else ChurnLimit between the bracket's
// ends; else the churn at the rate that held, taken as constant (an upper
// bound: the churn only grows with the rate).
func predictLimit(connRate float64, res SearchResult, points []point) float64 {
	var r1, c1, r2, c2 float64 // the two highest held rates below High
	for _, pt := range points {
		if pt.Failed || pt.ConnsPerWrite <= 0 || (res.High > 0 && pt.rate >= res.High) {
			continue
		}
		switch {
		case pt.rate > r2:
			r1, c1, r2, c2 = r2, c2, pt.rate, pt.ConnsPerWrite
		case pt.rate > r1 && pt.rate < r2:
			r1, c1 = pt.rate, pt.ConnsPerWrite
		}
	}
	switch {
	case r1 > 0:
		k := math.Max(math.Log(c2/c1)/math.Log(r2/r1), 0) // c(r) = c2 (r/r2)^k
		return math.Pow(connRate*math.Pow(r2, k)/c2, 1/(1+k))
	case res.High > 0 && res.CPWLow > 0 && res.CPWHigh > 0:
		r, _ := ChurnLimit(res.Low, res.CPWLow, res.High, res.CPWHigh, connRate)
		return r
	case r2 > 0:
		return connRate / c2
	case res.High > 0:
		return math.Sqrt(res.Low * res.High)
	}
	return math.Inf(1) // no churn measured yet
}

func clamp(v, lo, hi float64) float64 {
	if math.IsNaN(v) {
		return math.Sqrt(lo * hi)
	}
	return math.Min(math.Max(v, lo), hi)
}

func nonzero(v, fallback float64) float64 {
	if v > 0 {
		return v
	}
	return fallback
}
