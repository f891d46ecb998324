package loadgen

import (
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: 1 µs .. 60 s, 3 significant digits.
const (
	histMin = 1
	histMax = 60_000_000
	histSig = 3
)

// NewHistogram returns a latency histogram with loadcap's bounds (µs).
func NewHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSig) }

// recorder holds one worker's statistics. Its mutex is taken by the worker
// on every write and by the reporter once per interval: never contended by
// other workers.
type recorder struct {
	mu         sync.Mutex
	lat, svc   *hdrhistogram.Histogram
	ivl        *hdrhistogram.Histogram
	status     map[int]int64
	codes      map[string]int64
	retryAfter map[string]int64
	firstErr   map[string]string
	partial    int64

	started, inWindow, ok, failed, lines, late atomic.Int64
	classes                                    [32]atomic.Int64
}

func newRecorder() *recorder {
	return &recorder{lat: NewHistogram(), svc: NewHistogram(), ivl: NewHistogram()}
}

func clampUS(d time.Duration) int64 {
	us := d.Microseconds()
	if us < histMin {
		return histMin
	}
	if us > histMax {
		return histMax
	}
	return us
}

func (r *recorder) record(res *Result, intended, start, end time.Time) {
	if !res.Sent.IsZero() {
		start = res.Sent
	}
	lat, svc := clampUS(end.Sub(intended)), clampUS(end.Sub(start))
	r.mu.Lock()
	r.lat.RecordValue(lat)
	r.svc.RecordValue(svc)
	r.ivl.RecordValue(lat)
	if res.Class != "" {
		r.recordFailureLocked(res)
	}
	r.mu.Unlock()
	if res.Class == "" {
		r.ok.Add(1)
		r.lines.Add(int64(res.Lines))
	} else {
		r.failed.Add(1)
		r.classes[classSlot(res.Class)].Add(1)
	}
}

func (r *recorder) recordFailureLocked(res *Result) {
	if res.Status != 0 {
		if r.status == nil {
			r.status = map[int]int64{}
		}
		r.status[res.Status]++
	}
	if res.Code != "" {
		if r.codes == nil {
			r.codes = map[string]int64{}
		}
		r.codes[res.Code]++
	}
	if res.RetryAfter != "" {
		if r.retryAfter == nil {
			r.retryAfter = map[string]int64{}
		}
		r.retryAfter[res.RetryAfter]++
	}
	if res.Partial {
		r.partial++
	}
	if res.Err != nil {
		if r.firstErr == nil {
			r.firstErr = map[string]string{}
		}
		if _, ok := r.firstErr[res.Class]; !ok {
			r.firstErr[res.Class] = res.Err.Error()
		}
	}
}

// addClasses adds the recorder's error counts by class to m.
func (r *recorder) addClasses(m map[string]int64) {
	for i, c := range classes {
		if v := r.classes[i].Load(); v > 0 {
			m[c] += v
		}
	}
}

func classSlot(c string) int {
	if i, ok := classIndex[c]; ok {
		return i
	}
	return classIndex[ClassOther]
}
