package fleet

import (
	"encoding/base64"
	"errors"
	"math/rand"
	"strings"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/loadcap/loadcap/results"
)

var t0 = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }

func enc(t *testing.T, h *hdrhistogram.Histogram) string {
	t.Helper()
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func f(v float64) *float64 { return &v }

// shardDoc is shard i of n: writes latencies lat (µs) to one target, started
// at t0+off.
func shardDoc(t *testing.T, i, n int, off time.Duration, lat []int64, pred float64) *results.Document {
	h, s := newHist(), newHist()
	for _, v := range lat {
		h.RecordValue(v)
		s.RecordValue(v / 2)
	}
	ok := int64(len(lat))
	d := &results.Document{
		Schema: results.SchemaVersion, ID: "run-" + string(rune('a'+i)), StartedAt: t0.Add(off), FinishedAt: t0.Add(off + 10*time.Second),
		LoadcapVersion: "v1", Kernel: "6.1", Host: "pod-" + string(rune('a'+i)),
		Config:       results.Config{Targets: []string{"http://db:8086"}, Rate: 1000 / float64(n), DurationS: 10, Batch: 100, ClientProfile: "close-client", SysctlProfile: "host", Seed: 1, Series: 1000},
		Sysctl:       map[string]string{"net.ipv4.ip_local_port_range": "32768 60999", "net.ipv4.tcp_tw_reuse": string(rune('0' + i%2))},
		AchievedRate: 1000 / float64(n),
		Targets: []results.Target{{
			Name: "db", URL: "http://db:8086", Kind: "influx1", Writes: ok + 2, WritesOK: ok, WritesFailed: 2, LinesOK: ok * 100,
			Errors: map[string]int64{"timeout": 2}, AchievedRate: 1000 / float64(n), NewConnections: ok, PeakTimeWait: 100 * (i + 1),
			LatencyMS:  results.LatencyOf(h),
			Histograms: &results.Histograms{Latency: enc(t, h), ServiceTime: enc(t, s)},
			FirstError: "timeout after 10s",
		}},
		Sampler: &results.Sampler{IntervalMS: 250, Series: []results.Sample{
			{TMS: 0, States: map[string]int{"TIME_WAIT": 10 * (i + 1)}, PortsInUse: 10 * (i + 1), PortsAvailable: 28232 - i},
			{TMS: 250, States: map[string]int{"TIME_WAIT": 20 * (i + 1)}, PortsInUse: 20 * (i + 1), PortsAvailable: 28232 - i},
		}},
		Capacity: results.Capacity{PortsAvailable: 28232 - i, PortRange: "32768-60999", TimeWaitHoldS: 60, NewConnsPerWrite: 1, PredictedExhaustionRate: f(pred), Limit: "time_wait"},
		Timeline: []results.Interval{{TMS: 1000, Target: "db", Started: 100, OK: 99, Failed: 1, P99MS: float64(i + 1)}},
		Shard:    &results.Shard{Index: i, Count: n, FleetRate: 1000},
	}
	return d
}

func values(seed int64, n int) []int64 {
	r := rand.New(rand.NewSource(seed))
	out := make([]int64, n)
	for i := range out {
		out[i] = 200 + int64(r.ExpFloat64()*float64(1000*(seed+1)))
	}
	return out
}

func threeShards(t *testing.T) ([]Input, [][]int64) {
	var in []Input
	var lats [][]int64
	for i := 0; i < 3; i++ {
		lat := values(int64(i), 2000+500*i)
		lats = append(lats, lat)
		in = append(in, Input{Path: "s" + string(rune('0'+i)) + ".json", Doc: shardDoc(t, i, 3, time.Duration(i)*500*time.Millisecond, lat, 470+float64(i)*10)})
	}
	// out of order on purpose: Merge orders by shard
	in[0], in[2] = in[2], in[0]
	return in, lats
}

func TestMergeCountsAndExactHistograms(t *testing.T) {
	in, lats := threeShards(t)
	doc, err := Merge(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := results.Validate(doc); err != nil {
		t.Fatalf("merged document does not validate: %v", err)
	}
	all := newHist()
	var n int64
	for _, l := range lats {
		for _, v := range l {
			all.RecordValue(v)
		}
		n += int64(len(l))
	}
	tg := doc.Targets[0]
	if tg.WritesOK != n || tg.WritesFailed != 6 || tg.Writes != n+6 || tg.LinesOK != 100*n || tg.Errors["timeout"] != 6 || tg.NewConnections != n {
		t.Errorf("counts: %+v, want ok %d failed 6", tg, n)
	}
	got, err := results.DecodeHistogram(tg.Histograms.Latency)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equals(all) {
		t.Errorf("merged histogram differs from the histogram of all values: count %d vs %d, p99 %d vs %d", got.TotalCount(), all.TotalCount(), got.ValueAtQuantile(99), all.ValueAtQuantile(99))
	}
	if want := results.LatencyOf(all); tg.LatencyMS != want {
		t.Errorf("latency_ms %+v, want %+v (from the merged histogram)", tg.LatencyMS, want)
	}
	// Averaging the hosts' p99 would be wrong: show that it differs here,
	// so the test would notice a merge that averaged.
	var avg float64
	for _, x := range in {
		avg += x.Doc.Targets[0].LatencyMS.P99 / 3
	}
	if avg == tg.LatencyMS.P99 {
		t.Errorf("test data too regular: average p99 equals merged p99 %v", avg)
	}
	t.Logf("merged p99 %.3f ms, average of host p99s %.3f ms, %d writes", tg.LatencyMS.P99, avg, n)
	if doc.Config.Rate != 1000 || doc.AchievedRate != 1000 || tg.AchievedRate != 1000 {
		t.Errorf("rates: config %v achieved %v target %v, want 1000 (fleet total)", doc.Config.Rate, doc.AchievedRate, tg.AchievedRate)
	}
	if tg.PeakTimeWait != 300 {
		t.Errorf("peak_time_wait %d, want the highest host's 300", tg.PeakTimeWait)
	}
	if tg.FirstError != "pod-a: timeout after 10s" {
		t.Errorf("first_error %q", tg.FirstError)
	}
	fl := doc.Fleet
	if fl == nil || fl.Shards != 3 || len(fl.Hosts) != 3 || fl.StartSpreadMS != 1000 {
		t.Fatalf("fleet %+v", fl)
	}
	for i, h := range fl.Hosts {
		if h.Shard.Index != i || h.Host != "pod-"+string(rune('a'+i)) {
			t.Errorf("host %d: %s shard %d, want in shard order", i, h.Host, h.Shard.Index)
		}
	}
	if !doc.StartedAt.Equal(t0) || !doc.FinishedAt.Equal(t0.Add(11*time.Second)) {
		t.Errorf("window %s..%s", doc.StartedAt, doc.FinishedAt)
	}
}

func TestMergeCapacityDerived(t *testing.T) {
	in, _ := threeShards(t)
	doc, err := Merge(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fl := doc.Fleet
	if fl.ExhaustionRatePerHost == nil || *fl.ExhaustionRatePerHost != 470 || fl.WeakestHost != "pod-a" {
		t.Fatalf("per host exhaustion %v on %q, want 470 on pod-a", fl.ExhaustionRatePerHost, fl.WeakestHost)
	}
	c := doc.Capacity
	if c.PredictedExhaustionRate == nil || *c.PredictedExhaustionRate != 1410 {
		t.Errorf("fleet predicted exhaustion %v, want 3 x 470", c.PredictedExhaustionRate)
	}
	if c.Headroom == nil || *c.Headroom != 1.41 {
		t.Errorf("headroom %v, want 1410/1000", c.Headroom)
	}
	if c.PortsAvailable != 28232 || c.MeasuredExhaustionRate != nil {
		t.Errorf("ports %d measured %v", c.PortsAvailable, c.MeasuredExhaustionRate)
	}
	for i, h := range fl.Hosts {
		if *h.Capacity.PredictedExhaustionRate != 470+float64(i)*10 {
			t.Errorf("host %d capacity not kept: %v", i, *h.Capacity.PredictedExhaustionRate)
		}
	}
	if _, ok := doc.Sysctl["net.ipv4.tcp_tw_reuse"]; ok || doc.Sysctl["net.ipv4.ip_local_port_range"] != "32768 60999" {
		t.Errorf("sysctl %v: want only the common values", doc.Sysctl)
	}
	if !strings.Contains(strings.Join(doc.Notes, "\n"), "sysctl net.ipv4.tcp_tw_reuse differs between hosts") {
		t.Errorf("no note for the differing sysctl: %q", doc.Notes)
	}
	if len(fl.Derived) < 5 {
		t.Errorf("derived %q", fl.Derived)
	}
}

func TestMergeAlignsSamplerAndTimeline(t *testing.T) {
	in, _ := threeShards(t)
	doc, err := Merge(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Hosts start 0, 500 and 1000 ms after the fleet: samples at 0, 250 of
	// each land at 0,250 / 500,750 / 1000,1250 on the fleet's clock.
	s := doc.Sampler.Series
	if len(s) != 6 {
		t.Fatalf("%d merged samples, want 6: %+v", len(s), s)
	}
	want := []struct {
		t     int64
		hosts []string
	}{{0, []string{"pod-a"}}, {250, []string{"pod-a"}}, {500, []string{"pod-b"}}, {750, []string{"pod-b"}}, {1000, []string{"pod-c"}}, {1250, []string{"pod-c"}}}
	for i, w := range want {
		if s[i].TMS != w.t || len(s[i].ByHost) != len(w.hosts) {
			t.Errorf("sample %d: t %d hosts %d, want t %d hosts %v", i, s[i].TMS, len(s[i].ByHost), w.t, w.hosts)
			continue
		}
		if _, ok := s[i].ByHost[w.hosts[0]]; !ok {
			t.Errorf("sample %d: by_host %v, want %v", i, s[i].ByHost, w.hosts)
		}
	}
	if s[5].ByHost["pod-c"].TMS != 1250 || s[5].States["TIME_WAIT"] != 60 || s[5].PortsAvailable != 28230 {
		t.Errorf("last sample %+v", s[5])
	}
	// Overlapping hosts: two hosts 100 ms apart share slots; the sums and
	// the max/min follow.
	a := shardDoc(t, 0, 2, 0, values(1, 10), 500)
	b := shardDoc(t, 1, 2, 100*time.Millisecond, values(2, 10), 500)
	doc, err = Merge([]Input{{"a", a}, {"b", b}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s = doc.Sampler.Series
	if len(s) != 2 || s[0].States["TIME_WAIT"] != 30 || s[1].States["TIME_WAIT"] != 60 || s[1].PortsInUse != 40 || s[1].PortsAvailable != 28231 || len(s[1].ByHost) != 2 {
		t.Errorf("overlapping: %+v", s)
	}
	if len(doc.Timeline) != 1 || doc.Timeline[0].Started != 200 || doc.Timeline[0].P99MS != 2 {
		t.Errorf("timeline %+v, want one interval summed, p99 the highest", doc.Timeline)
	}
}

func TestMergeRefusals(t *testing.T) {
	mk := func() []Input {
		in, _ := threeShards(t)
		return in
	}
	cases := []struct {
		name  string
		mod   func([]Input) []Input
		field string
		msg   string
		force bool // --force lets it through
	}{
		{"batch differs", func(in []Input) []Input { in[1].Doc.Config.Batch = 10; return in }, "config.batch", "config.batch differs: 100 in s0.json, 10 in s1.json (--force merges anyway)", true},
		{"targets differ", func(in []Input) []Input { in[1].Doc.Config.Targets = []string{"http://other:8086"}; return in },
			"config.targets", "config.targets differs: [http://db:8086] in s0.json, [http://other:8086] in s1.json", true},
		{"missing shard", func(in []Input) []Input { return in[:2] }, "shard", "missing shards 0/3", true},
		{"repeated shard", func(in []Input) []Input { in[1].Doc.Shard.Index = 2; return in }, "shard", "shard 2/3 twice", true},
		{"shard counts", func(in []Input) []Input { in[1].Doc.Shard.Count = 4; return in }, "shard", "shard counts differ", false},
		{"mixed", func(in []Input) []Input { in[1].Doc.Shard = nil; return in }, "shard", "s1.json not sharded", false},
		{"same run", func(in []Input) []Input { in[1].Doc.ID = in[0].Doc.ID; return in }, "", "are the same run", false},
		{"merged input", func(in []Input) []Input { in[1].Doc.Fleet = &results.Fleet{}; return in }, "", "already a merged fleet document", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Merge(c.mod(mk()), Options{})
			var me *MismatchError
			if !errors.As(err, &me) {
				t.Fatalf("err %v, want a MismatchError", err)
			}
			if me.Field != c.field || !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "merge results: ") {
				t.Errorf("error %q (field %q), want one line with %q (field %q)", err, me.Field, c.msg, c.field)
			}
			doc, err := Merge(c.mod(mk()), Options{Force: true})
			if c.force {
				if err != nil || !doc.Fleet.Forced || len(doc.Fleet.Differences) == 0 {
					t.Errorf("--force: err %v", err)
				}
			} else if err == nil {
				t.Errorf("--force merged it anyway")
			}
		})
	}
}

func TestMergeUnsharded(t *testing.T) {
	a := shardDoc(t, 0, 1, 0, values(1, 100), 500)
	b := shardDoc(t, 1, 1, 0, values(2, 100), 600)
	a.Shard, b.Shard = nil, nil
	a.Host, b.Host = "same", "same"
	doc, err := Merge([]Input{{"a", a}, {"b", b}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if doc.Config.Rate != 2000 || doc.Fleet.Shards != 0 {
		t.Errorf("rate %v shards %d: want the sum of the hosts' rates", doc.Config.Rate, doc.Fleet.Shards)
	}
	if doc.Fleet.Hosts[0].Host == doc.Fleet.Hosts[1].Host {
		t.Errorf("host labels not distinct: %q", doc.Fleet.Hosts[0].Host)
	}
	if *doc.Capacity.PredictedExhaustionRate != 1000 {
		t.Errorf("predicted %v, want 2 x 500", *doc.Capacity.PredictedExhaustionRate)
	}
}

func TestMergeMissingHistogram(t *testing.T) {
	in, _ := threeShards(t)
	in[1].Doc.Targets[0].Histograms = nil
	doc, err := Merge(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if doc.Targets[0].Histograms != nil || doc.Targets[0].LatencyMS != (results.Latency{}) {
		t.Errorf("latency estimated without every host's histogram: %+v", doc.Targets[0].LatencyMS)
	}
	if !strings.Contains(strings.Join(doc.Notes, "\n"), "has no histograms") {
		t.Errorf("notes %q", doc.Notes)
	}
}

func TestConfigDiff(t *testing.T) {
	a := results.Config{Rate: 1, Targets: []string{"x"}}
	b := a
	b.Gzip, b.Targets = true, []string{"y"}
	d := ConfigDiff(a, b)
	if len(d) != 2 || d[0].Field != "config.targets" || d[1].Field != "config.gzip" || d[1].A != "false" || d[1].B != "true" {
		t.Errorf("%+v", d)
	}
	if len(ConfigDiff(a, a)) != 0 {
		t.Error("a config differs from itself")
	}
}
