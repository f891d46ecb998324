package export

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/loadcap/loadcap/loadgen"
)

// Export buffers: a worker never waits on an export file. When a buffer is
// full the record is dropped and counted, and the count is reported in the
// notes Close returns.
const (
	vegetaBuffer = 1 << 16 // per-write results in flight to the writer
	hdrBuffer    = 256     // interval histograms in flight to the writer
	exportBufIO  = 256 << 10
)

// Options names the export files of a run ("" for none).
type Options struct {
	// HDRLog is an HdrHistogram interval log (µs), one interval per
	// second per target, tagged with the target's name.
	HDRLog string
	// VegetaResults receives every write's result in vegeta's encoding.
	VegetaResults string
}

// Set is the open exports of one run.
type Set struct {
	vegeta *vegetaExport
	hdr    *hdrExport
}

// Open creates the export files of o for targets with these names. On an
// error nothing is left open.
func Open(o Options, names []string) (*Set, error) {
	s := &Set{}
	if o.VegetaResults != "" {
		v, err := newVegetaExport(o.VegetaResults, names)
		if err != nil {
			return nil, err
		}
		s.vegeta = v
	}
	if o.HDRLog != "" {
		h, err := newHDRExport(o.HDRLog, names)
		if err != nil {
			s.Close(nil)
			return nil, err
		}
		s.hdr = h
	}
	return s, nil
}

// Hook chains the exports into the engine's callbacks, keeping any
// OnInterval already set (the progress line). A nil Set hooks nothing.
func (s *Set) Hook(c *loadgen.Config) {
	if s == nil {
		return
	}
	if s.vegeta != nil {
		c.OnResult = s.vegeta.onResult
	}
	if s.hdr != nil {
		prev := c.OnInterval
		c.OnInterval = func(t loadgen.Tick) {
			s.hdr.onInterval(t)
			if prev != nil {
				prev(t)
			}
		}
	}
}

// Close flushes and closes the export files. With a report it first
// writes what the interval log missed (the writes after the last tick).
// It returns sentences for the result's notes (dropped records, write
// errors) and the first error.
func (s *Set) Close(rep *loadgen.Report) (notes []string, err error) {
	if s == nil {
		return nil, nil
	}
	var errs []error
	if s.vegeta != nil {
		drops, err := s.vegeta.close()
		if drops > 0 {
			notes = append(notes, fmt.Sprintf("vegeta export %s: %d write results dropped (the writer fell behind; counts in vegeta report are short by that)", s.vegeta.path, drops))
		}
		if err != nil {
			errs = append(errs, err)
		}
		s.vegeta = nil
	}
	if s.hdr != nil {
		drops, err := s.hdr.close(rep)
		if drops > 0 {
			notes = append(notes, fmt.Sprintf("hdr log %s: %d interval histograms dropped (the writer fell behind)", s.hdr.path, drops))
		}
		if err != nil {
			errs = append(errs, err)
		}
		s.hdr = nil
	}
	for _, err := range errs {
		notes = append(notes, err.Error())
	}
	return notes, errors.Join(errs...)
}

// vegetaExport writes every write's result in vegeta's gob encoding, as
// `vegeta attack` does, through one writer goroutine.
type vegetaExport struct {
	path  string
	names []string
	f     *os.File
	ch    chan vegeta.Result
	done  chan struct{}
	drops atomic.Int64
	err   error // set by the writer goroutine, read after done
	once  sync.Once
}

func newVegetaExport(path string, names []string) (*vegetaExport, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("open --vegeta-results: %w", err)
	}
	v := &vegetaExport{path: path, names: names, f: f, ch: make(chan vegeta.Result, vegetaBuffer), done: make(chan struct{})}
	go v.write()
	return v, nil
}

func (v *vegetaExport) write() {
	defer close(v.done)
	bw := bufio.NewWriterSize(v.f, exportBufIO)
	enc := vegeta.NewEncoder(bw)
	for r := range v.ch {
		if v.err != nil {
			v.drops.Add(1)
			continue
		}
		if err := enc.Encode(&r); err != nil {
			v.err = fmt.Errorf("write --vegeta-results %s: %w", v.path, err)
			v.drops.Add(1)
		}
	}
	if err := bw.Flush(); err != nil && v.err == nil {
		v.err = fmt.Errorf("write --vegeta-results %s: %w", v.path, err)
	}
}

// VegetaResult converts one write to vegeta's Result: Attack is the target
// name, Timestamp the intended start, Latency runs from it to the end (as
// loadcap's latency does), Code the HTTP status (200 for a successful
// non-HTTP write, 0 when no response came), Error the error class (with
// the HTTP status or SQLSTATE when there is one).
func VegetaResult(target string, r loadgen.WriteRecord) vegeta.Result {
	out := vegeta.Result{Attack: target, Seq: r.Seq, Timestamp: r.Intended, Latency: r.End.Sub(r.Intended), Method: "POST"}
	if res := r.Result; res != nil {
		if res.Status > 0 && res.Status < 1<<16 {
			out.Code = uint16(res.Status)
		} else if res.Class == "" {
			out.Code = 200
		}
		if res.Class != "" {
			out.Error = res.Class
			switch {
			case res.Code != "":
				out.Error += " " + res.Code
			case res.Status != 0:
				out.Error += fmt.Sprintf(" %d", res.Status)
			}
			// vegeta counts 2xx/3xx as success; a failed write is never one.
			if out.Code >= 200 && out.Code < 400 {
				out.Code = 0
			}
		}
	}
	return out
}

// onResult is the engine's OnResult: it never blocks the worker.
func (v *vegetaExport) onResult(r loadgen.WriteRecord) {
	name := ""
	if r.Target >= 0 && r.Target < len(v.names) {
		name = v.names[r.Target]
	}
	select {
	case v.ch <- VegetaResult(name, r):
	default:
		v.drops.Add(1)
	}
}

func (v *vegetaExport) close() (int64, error) {
	v.once.Do(func() { close(v.ch) })
	<-v.done
	err := v.err
	if cerr := v.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close --vegeta-results %s: %w", v.path, cerr)
	}
	return v.drops.Load(), err
}

// hdrInterval is one target's latency histogram over one interval.
type hdrInterval struct {
	target     int
	start, end time.Time
	h          *hdrhistogram.Histogram
}

// hdrExport writes an HdrHistogram interval log: one interval per tick per
// target, tagged with the target's name, values in microseconds.
type hdrExport struct {
	path  string
	names []string
	tags  []string
	f     *os.File
	bw    *bufio.Writer
	lw    *hdrhistogram.HistogramLogWriter
	ch    chan hdrInterval
	done  chan struct{}
	drops atomic.Int64
	err   error
	once  sync.Once

	// owned by the engine's reporter goroutine (onInterval)
	start   time.Time
	lastEnd time.Duration
	// owned by the writer goroutine until done
	sums    []*hdrhistogram.Histogram
	written time.Time
	header  bool
}

var badTag = regexp.MustCompile(`[,\s]+`)

// HDRTag turns a target name into an HdrHistogram log tag (no commas,
// spaces or line breaks).
func HDRTag(name string) string {
	t := badTag.ReplaceAllString(name, "_")
	if t == "" {
		return "target"
	}
	return t
}

func newHDRExport(path string, names []string) (*hdrExport, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("open --hdr-log: %w", err)
	}
	h := &hdrExport{path: path, names: names, f: f, ch: make(chan hdrInterval, hdrBuffer), done: make(chan struct{})}
	h.bw = bufio.NewWriterSize(f, 64<<10)
	h.lw = hdrhistogram.NewHistogramLogWriter(h.bw)
	for _, n := range names {
		h.tags = append(h.tags, HDRTag(n))
		h.sums = append(h.sums, loadgen.NewHistogram())
	}
	go h.write()
	return h, nil
}

// onInterval copies each target's interval histogram (valid only during
// the callback) and hands it to the writer without waiting.
func (h *hdrExport) onInterval(t loadgen.Tick) {
	now := time.Now()
	if h.start.IsZero() {
		h.start = now.Add(-t.Elapsed)
	}
	from, to := h.start.Add(h.lastEnd), h.start.Add(t.Elapsed)
	h.lastEnd = t.Elapsed
	for i, tt := range t.Targets {
		if tt.Hist == nil || i >= len(h.names) {
			continue
		}
		cp := hdrhistogram.Import(tt.Hist.Export())
		select {
		case h.ch <- hdrInterval{target: i, start: from, end: to, h: cp}:
		default:
			h.drops.Add(1)
		}
	}
}

func (h *hdrExport) writeHeader(start time.Time) {
	ms := start.UnixMilli()
	h.lw.OutputLogFormatVersion()
	h.lw.OutputComment("[loadcap latency from each write's intended start; values in microseconds (HistogramLogProcessor -outputValueUnitRatio 1000 for milliseconds); one tag per target]")
	h.lw.OutputStartTime(ms)
	h.lw.OutputBaseTime(ms)
	h.lw.SetBaseTime(ms)
	h.lw.OutputLegend()
	h.header = true
}

func (h *hdrExport) output(iv hdrInterval) {
	if h.err != nil {
		h.drops.Add(1)
		return
	}
	if !h.header {
		h.writeHeader(iv.start)
	}
	iv.h.SetTag(h.tags[iv.target])
	iv.h.SetStartTimeMs(iv.start.UnixMilli())
	iv.h.SetEndTimeMs(iv.end.UnixMilli())
	if err := h.lw.OutputIntervalHistogram(iv.h); err != nil {
		h.err = fmt.Errorf("write --hdr-log %s: %w", h.path, err)
		return
	}
	h.sums[iv.target].Merge(iv.h)
	if iv.end.After(h.written) {
		h.written = iv.end
	}
}

func (h *hdrExport) write() {
	defer close(h.done)
	for iv := range h.ch {
		h.output(iv)
	}
}

// close stops the writer and, given the engine's report, writes a last
// interval per target with whatever the ticks did not carry (the writes
// that ended after the last tick), so that the log's intervals add up to
// the run's histograms exactly.
func (h *hdrExport) close(rep *loadgen.Report) (int64, error) {
	h.once.Do(func() { close(h.ch) })
	<-h.done
	if rep != nil && h.err == nil {
		if !h.header {
			h.writeHeader(rep.Start)
		}
		from := h.written
		if from.IsZero() {
			from = rep.Start
		}
		for i, tr := range rep.Targets {
			if i >= len(h.sums) || tr.Latency == nil {
				continue
			}
			rest := subtract(tr.Latency, h.sums[i])
			if rest == nil || rest.TotalCount() == 0 {
				continue
			}
			h.output(hdrInterval{target: i, start: from, end: rep.End, h: rest})
		}
	}
	err := h.err
	if ferr := h.bw.Flush(); ferr != nil && err == nil {
		err = fmt.Errorf("write --hdr-log %s: %w", h.path, ferr)
	}
	if cerr := h.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close --hdr-log %s: %w", h.path, cerr)
	}
	return h.drops.Load(), err
}

// subtract returns total - part for two histograms of the same layout
// (negative buckets, from dropped intervals, count as zero), or nil when
// the layouts differ.
func subtract(total, part *hdrhistogram.Histogram) *hdrhistogram.Histogram {
	a, b := total.Export(), part.Export()
	if len(a.Counts) != len(b.Counts) {
		return nil
	}
	for i := range a.Counts {
		a.Counts[i] -= b.Counts[i]
	}
	return hdrhistogram.Import(a)
}
