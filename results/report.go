package results

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

//go:embed report.html.tmpl
var reportTemplate string

// Palette is the colour of each run in the report's charts, in order.
var Palette = []string{"#2f6fb0", "#e8772e", "#3a9d5d", "#c23b4e", "#7b5ea7", "#1d9aa8", "#b8860b", "#d45d9a"}

// StateColors are the colours of the socket states in the report;
// TIME_WAIT is the loud one.
var StateColors = map[string]string{
	"TIME_WAIT":   "#d1495b",
	"ESTABLISHED": "#3d7cc9",
	"SYN_SENT":    "#8fc1e3",
	"FIN_WAIT1":   "#f0a35e",
	"FIN_WAIT2":   "#edc06d",
	"CLOSE_WAIT":  "#9b7ec8",
	"LAST_ACK":    "#b9a7d8",
	"CLOSING":     "#c9b7a0",
	"SYN_RECV":    "#9fd4c9",
	"CLOSE":       "#bbbbbb",
	"other":       "#9a9a9a",
}

// stateOrder is the stacking order, bottom first: TIME_WAIT sits on the
// axis so that its area reads directly against the port budget.
var stateOrder = []string{"TIME_WAIT", "ESTABLISHED", "SYN_SENT", "FIN_WAIT1", "FIN_WAIT2", "CLOSING", "LAST_ACK", "CLOSE_WAIT", "SYN_RECV", "CLOSE"}

// ReportOptions tune the HTML report.
type ReportOptions struct {
	// Title heads the page ("" for a default).
	Title string
	// Now stamps the page (zero: time.Now); tests pin it.
	Now time.Time
}

// reportData is what the page's inline script draws, embedded as JSON.
type reportData struct {
	Runs []reportRun `json:"runs"`
}

type reportRun struct {
	ID        string   `json:"id"`
	Label     string   `json:"label"`
	Color     string   `json:"color"`
	Targets   []string `json:"targets"`
	Rate      float64  `json:"rate"`
	Achieved  float64  `json:"achieved"`
	FindLimit bool     `json:"find_limit"`

	PortsAvailable int      `json:"ports_available"`
	Predicted      *float64 `json:"predicted"`
	Measured       *float64 `json:"measured"`
	MeasuredLow    *float64 `json:"measured_low"`
	MeasuredHigh   *float64 `json:"measured_high"`

	States   *reportStates  `json:"states"`
	Rates    reportRates    `json:"rates"`
	Errors   reportErrors   `json:"errors"`
	Spectrum []spectrumPt   `json:"spectrum"`
	Service  []spectrumPt   `json:"service"`
	Steps    []reportStep   `json:"steps"`
	Summary  []summaryValue `json:"summary"`
	// NAT is the translator's conntrack table over time (NAT lab runs).
	NAT *reportNAT `json:"nat,omitempty"`
}

// reportNAT is a NAT lab run's router samples: the busiest destination's
// entries holding a translated port, in TIME_WAIT, and the drops so far.
type reportNAT struct {
	Ports    int       `json:"ports"`
	T        []float64 `json:"t"`
	Held     []int     `json:"held"`
	TimeWait []int     `json:"time_wait"`
	Drop     []uint64  `json:"drop"`
}

func buildNAT(d *Document) *reportNAT {
	if d.NAT == nil || len(d.NAT.Samples) == 0 {
		return nil
	}
	n := &reportNAT{Ports: d.NAT.Ports}
	for _, s := range d.NAT.Samples {
		n.T = append(n.T, s.T)
		n.Held = append(n.Held, s.Held)
		n.TimeWait = append(n.TimeWait, s.TimeWait)
		n.Drop = append(n.Drop, s.Drop)
	}
	return n
}

type reportStates struct {
	T      []float64          `json:"t"` // seconds from the run's start
	States map[string][]int   `json:"states"`
	Order  []string           `json:"order"`
	Colors map[string]string  `json:"colors"`
	Budget []int              `json:"budget"`
	InUse  []int              `json:"in_use"`
	Peak   map[string]float64 `json:"-"`
}

type reportRates struct {
	T     []float64 `json:"t"`
	Rate  []float64 `json:"rate"` // writes started per second per target
	Asked []float64 `json:"asked"`
}

type reportErrors struct {
	T       []float64            `json:"t"`
	Classes map[string][]float64 `json:"classes"` // errors/s, all targets
	Total   []float64            `json:"total"`
}

type spectrumPt struct {
	P  float64 `json:"p"`  // percentile, 0..100
	MS float64 `json:"ms"` // latency at it
}

type reportStep struct {
	Rate         float64 `json:"rate"`
	Achieved     float64 `json:"achieved"`
	PortErrors   int64   `json:"port_errors"`
	OtherErrors  int64   `json:"other_errors"`
	PeakTimeWait int     `json:"peak_time_wait"`
	Phase        string  `json:"phase"`
}

type summaryValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// HTMLReporter returns a Reporter writing one self-contained HTML page of
// docs: socket states over time, achieved vs asked rate, error rate by
// class, the latency percentile spectrum, the find-limit steps and the
// comparison table. Charts are SVG drawn by an inline script from data
// embedded in the page; nothing is fetched from the network. When the
// page has drawn, its body carries data-charts, data-drawn and
// data-errors, and its title ends with "charts=N drawn=N errors=N".
func HTMLReporter(docs []*Document, opt ReportOptions) (Reporter, error) {
	if len(docs) == 0 {
		return nil, fmt.Errorf("report: no result documents")
	}
	tmpl, err := template.New("report").Funcs(template.FuncMap{"inc": func(n int) int { return n + 1 }}).Parse(reportTemplate)
	if err != nil {
		return nil, fmt.Errorf("report: parse template: %w", err)
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	title := opt.Title
	if title == "" {
		title = "loadcap report"
	}
	labels := Labels(docs)
	data := reportData{}
	for i, d := range docs {
		data.Runs = append(data.Runs, buildRun(d, labels[i], Palette[i%len(Palette)]))
	}
	cmp := Compare(docs)
	view := struct {
		Title     string
		Generated string
		Runs      []reportRun
		Data      reportData
		Table     *Comparison
		Notes     map[string][]string
	}{Title: title, Generated: now.UTC().Format("2006-01-02 15:04 UTC"), Runs: data.Runs, Data: data, Table: cmp, Notes: map[string][]string{}}
	for i, d := range docs {
		var ns []string
		if e := d.Capacity.Explanation; e != "" {
			ns = append(ns, e)
		}
		ns = append(ns, d.Notes...)
		view.Notes[data.Runs[i].ID] = ns
	}
	return func(w io.Writer) error {
		if err := tmpl.Execute(w, view); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		return nil
	}, nil
}

func buildRun(d *Document, label, color string) reportRun {
	r := reportRun{
		ID: d.ID, Label: label, Color: color, Rate: d.Config.Rate, Achieved: d.AchievedRate, FindLimit: d.Config.FindLimit,
		PortsAvailable: d.Capacity.PortsAvailable, Predicted: d.Capacity.PredictedExhaustionRate,
		Measured: d.Capacity.MeasuredExhaustionRate, MeasuredLow: d.Capacity.MeasuredLow, MeasuredHigh: d.Capacity.MeasuredHigh,
	}
	for _, t := range d.Targets {
		r.Targets = append(r.Targets, t.Name)
	}
	r.States = buildStates(d)
	r.Rates, r.Errors = buildTimeline(d)
	r.Spectrum = spectrum(MergedHistogram(d, false))
	r.Service = spectrum(MergedHistogram(d, true))
	for _, s := range d.Steps {
		st := reportStep{Rate: s.Rate, Achieved: s.AchievedRate, PeakTimeWait: s.PeakTimeWait, Phase: s.Phase}
		for k, v := range s.Errors {
			if IsPortError(k) {
				st.PortErrors += v
			} else {
				st.OtherErrors += v
			}
		}
		r.Steps = append(r.Steps, st)
	}
	sort.SliceStable(r.Steps, func(i, j int) bool { return r.Steps[i].Rate < r.Steps[j].Rate })
	l := RunLatency(d)
	peak := 0
	for _, t := range d.Targets {
		peak = max(peak, t.PeakTimeWait)
	}
	r.Summary = []summaryValue{
		{"achieved", fmtRate(d.AchievedRate) + " w/s"},
		{"ok / failed", fmt.Sprintf("%d / %d", totalOK(d), totalFailed(d))},
		{"p99", fmtNum(l.P99) + " ms"},
		{"peak TIME_WAIT", fmt.Sprint(peak)},
		{"predicted limit", limitText(d.Capacity.PredictedExhaustionRate, "")},
		{"measured limit", measuredText(d)},
	}
	r.Summary = append(r.Summary, natSummary(d)...)
	r.NAT = buildNAT(d)
	return r
}

func buildStates(d *Document) *reportStates {
	if d.Sampler == nil || len(d.Sampler.Series) == 0 {
		return nil
	}
	s := &reportStates{States: map[string][]int{}, Colors: StateColors}
	seen := map[string]bool{}
	for _, smp := range d.Sampler.Series {
		for k, v := range smp.States {
			if v > 0 {
				seen[k] = true
			}
		}
	}
	known := map[string]bool{}
	for _, k := range stateOrder {
		known[k] = true
		if seen[k] {
			s.Order = append(s.Order, k)
		}
	}
	other := false
	for k := range seen {
		if !known[k] {
			other = true
		}
	}
	if other {
		s.Order = append(s.Order, "other")
	}
	if len(s.Order) == 0 {
		s.Order = []string{"ESTABLISHED"}
	}
	for _, k := range s.Order {
		s.States[k] = make([]int, len(d.Sampler.Series))
	}
	for i, smp := range d.Sampler.Series {
		s.T = append(s.T, float64(smp.TMS)/1000)
		for k, v := range smp.States {
			if known[k] {
				if col, ok := s.States[k]; ok {
					col[i] = v
				}
			} else {
				s.States["other"][i] += v
			}
		}
		b := smp.PortsAvailable
		if b == 0 {
			b = d.Capacity.PortsAvailable
		}
		s.Budget = append(s.Budget, b)
		s.InUse = append(s.InUse, smp.PortsInUse)
	}
	return s
}

// buildTimeline turns the per-target intervals into per-second rates: the
// writes started per target and the errors of all targets by class.
func buildTimeline(d *Document) (reportRates, reportErrors) {
	type agg struct {
		started int64
		errs    map[string]int64
		failed  int64
		n       int
	}
	byT := map[int64]*agg{}
	var ts []int64
	for _, iv := range d.Timeline {
		a := byT[iv.TMS]
		if a == nil {
			a = &agg{errs: map[string]int64{}}
			byT[iv.TMS] = a
			ts = append(ts, iv.TMS)
		}
		a.started += iv.Started
		a.failed += iv.Failed
		a.n++
		for k, v := range iv.Errors {
			a.errs[k] += v
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	asked, paceS := d.Config.Rate, d.Config.DurationS
	if d.Config.FindLimit && len(d.Steps) > 0 {
		// The document's timeline is one step's: the step whose achieved
		// rate is the document's.
		best := math.Inf(1)
		for _, s := range d.Steps {
			if diff := math.Abs(s.AchievedRate - d.AchievedRate); diff < best {
				best, asked, paceS = diff, s.Rate, s.DurationS
			}
		}
	}
	targets := max(len(d.Targets), 1)
	rates := reportRates{}
	errs := reportErrors{Classes: map[string][]float64{}}
	classes := map[string]bool{}
	for _, a := range byT {
		for k := range a.errs {
			classes[k] = true
		}
	}
	for k := range classes {
		errs.Classes[k] = make([]float64, 0, len(ts))
	}
	prev := int64(0)
	// The interval after the pacer stopped only drains in-flight writes:
	// its started rate says nothing about the rate achieved.
	paceEnd := int64(paceS*1000) + 100
	for _, t := range ts {
		a := byT[t]
		span := float64(t-prev) / 1000
		prev = t
		if span <= 0 {
			continue
		}
		sec := float64(t) / 1000
		if t <= paceEnd || paceS <= 0 || len(ts) == 1 {
			rates.T = append(rates.T, sec)
			rates.Rate = append(rates.Rate, round3(float64(a.started)/float64(targets)/span))
			rates.Asked = append(rates.Asked, asked)
		}
		errs.T = append(errs.T, sec)
		errs.Total = append(errs.Total, round3(float64(a.failed)/span))
		for k := range classes {
			errs.Classes[k] = append(errs.Classes[k], round3(float64(a.errs[k])/span))
		}
	}
	return rates, errs
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// spectrum samples a histogram (µs) as percentile -> latency (ms) points,
// evenly on the 1/(1-p) log axis up to the last recorded value.
func spectrum(h interface {
	TotalCount() int64
	ValueAtQuantile(float64) int64
	Max() int64
}) []spectrumPt {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	total := float64(h.TotalCount())
	// Beyond 1/total the percentiles only repeat the max.
	top := math.Min(math.Log10(total)+0.3, 6)
	var out []spectrumPt
	for x := 0.0; x <= top+1e-9; x += 0.05 {
		p := (1 - math.Pow(10, -x)) * 100
		out = append(out, spectrumPt{P: round6(p), MS: float64(h.ValueAtQuantile(p)) / 1000})
	}
	out = append(out, spectrumPt{P: round6((1 - math.Pow(10, -top-0.05)) * 100), MS: float64(h.Max()) / 1000})
	return out
}

func round6(f float64) float64 { return math.Round(f*1e6) / 1e6 }

// FigureName is the row's figure with its unit, for the report's table.
func (r Row) FigureName() string { return figureName(r) }

// ShortID is the id's time and suffix, for compact headers.
func (c Column) ShortID() string {
	if i := strings.IndexByte(c.ID, 'T'); i >= 0 {
		return c.ID[i+1:]
	}
	return c.ID
}
