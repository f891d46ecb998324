package results_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/results"
)

// Compare and the HTML report show a NAT lab run's translator beside the
// client's own figures; a run without NAT shows "-" there.
func TestCompareAndReportNAT(t *testing.T) {
	files, err := results.LoadAll([]string{"testdata/close-client-host.json"})
	if err != nil {
		t.Fatal(err)
	}
	plain := results.Docs(files)[0]
	natDoc := *plain
	natDoc.ID = plain.ID + "-nat"
	natDoc.NAT = &results.NAT{Ports: 200, PortLow: 50000, Clients: 4,
		RouterSysctls: map[string]string{"net.netfilter.nf_conntrack_tcp_timeout_time_wait": "30"},
		Samples:       []results.NATSample{{T: 1, Held: 12, TimeWait: 150, Entries: 170}, {T: 2, Held: 7, TimeWait: 198, Entries: 210, Drop: 3, InsertFailed: 3}},
		PeakHeld:      12, PeakEntries: 210, Drop: 3, InsertFailed: 3}
	docs := []*results.Document{plain, &natDoc}
	c := results.Compare(docs)
	got := map[string][2]string{}
	for _, r := range c.Rows {
		if r.Section == "nat" {
			got[r.Figure] = [2]string{r.Cells[0].Text, r.Cells[1].Text}
		}
	}
	want := map[string][2]string{
		"clients behind the NAT":       {"-", "4"},
		"translated ports":             {"-", "200"},
		"conntrack TIME_WAIT timeout":  {"-", "30"},
		"peak translated ports in use": {"-", "12 of 200"},
		"peak conntrack TIME_WAIT":     {"-", "198"},
		"router drops":                 {"-", "3"},
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %q", k, got[k], w)
		}
	}
	rep, err := results.HTMLReporter(docs, results.ReportOptions{Now: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := rep(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, s := range []string{"peak translated ports in use", "12 of 200", "NAT ports in use", "12 of 200 (4 clients)", "NAT drops", "3 (insert_failed 3, early_drop 0)"} {
		if !strings.Contains(page, s) {
			t.Errorf("report lacks %q", s)
		}
	}
}
