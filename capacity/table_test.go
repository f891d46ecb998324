package capacity

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/profiles"
)

// tableOptions loads built-in client and sysctl profiles by name.
func tableOptions(t *testing.T, clients, sysctls []string) TableOptions {
	t.Helper()
	o := TableOptions{ClientNames: clients, SysctlNames: sysctls, Targets: 1}
	for _, n := range clients {
		p, err := profiles.LoadClient(n)
		if err != nil {
			t.Fatal(err)
		}
		o.Clients = append(o.Clients, p)
	}
	for _, n := range sysctls {
		s, err := profiles.LoadSysctl(n)
		if err != nil {
			t.Fatal(err)
		}
		k, err := KernelFromSysctl(s.Map())
		if err != nil {
			t.Fatal(err)
		}
		o.Kernels = append(o.Kernels, k)
	}
	return o
}

func rateOf(p *float64) string {
	if p == nil {
		return "never"
	}
	return FormatRate(*p)
}

// NewTable: a row per client, a cell per sysctl, in the order given; the
// rate of each cell is the model's (28232 ports / 60 s = 470.5 writes/s
// for close-client on the Linux defaults, never for a keep-alive pool);
// the NAT and firewall-idle parts are there only when asked.
func TestNewTable(t *testing.T) {
	clients := []string{"close-client", "keepalive"}
	sysctls := []string{"linux-default", "tw-reuse"}
	cases := []struct {
		what     string
		edit     func(*TableOptions)
		rates    [][]string // client x sysctl, "rate limit"
		natRates [][]string // nil: no NAT stage
		idle     [][]string // nil: no firewall-idle answer; "survives" or "dies"
	}{
		{
			"remote, one target", func(*TableOptions) {},
			[][]string{{"470.5 time-wait", "28.2k tw-reuse-delay"}, {"never pool", "never pool"}}, nil, nil,
		},
		{
			// Two targets: connect() has a port range per destination.
			"two targets", func(o *TableOptions) { o.Targets = 2 },
			[][]string{{"470.5 time-wait", "28.2k tw-reuse-delay"}, {"never pool", "never pool"}}, nil, nil,
		},
		{
			// 101 translated ports held 120 s each: 0.842 writes/s.
			"behind a small NAT without eviction", func(o *TableOptions) {
				o.NAT = &NAT{PortLow: 40000, PortHigh: 40100, Addrs: 1, ConntrackTimeWait: 120 * time.Second, ConntrackMax: 262144, Clients: 1, NoEvict: true}
			},
			[][]string{{"470.5 time-wait", "28.2k tw-reuse-delay"}, {"never pool", "never pool"}},
			[][]string{{"0.842 nat", "0.842 nat"}, {"never ", "never "}}, nil,
		},
		{
			"firewall idle 30s", func(o *TableOptions) { o.FirewallIdle = 30 * time.Second },
			[][]string{{"470.5 time-wait", "28.2k tw-reuse-delay"}, {"never pool", "never pool"}}, nil,
			// One connection per write leaves nothing idle; a keep-alive
			// pool without heartbeat nor TCP keepalive is dropped.
			[][]string{{"survives", "survives"}, {"dies", "dies"}},
		},
	}
	for _, c := range cases {
		o := tableOptions(t, clients, sysctls)
		c.edit(&o)
		tb := NewTable(o)
		if tb.Targets != o.Targets || tb.FirewallIdleS != o.FirewallIdle.Seconds() || len(tb.Rows) != len(clients) {
			t.Errorf("%s: table %+v", c.what, tb)
			continue
		}
		if (tb.NAT != nil) != (o.NAT != nil) {
			t.Errorf("%s: NAT %+v, asked %+v", c.what, tb.NAT, o.NAT)
		}
		for i, r := range tb.Rows {
			if r.Client != clients[i] || len(r.Cells) != len(sysctls) {
				t.Errorf("%s: row %d %+v", c.what, i, r)
				continue
			}
			for j, cell := range r.Cells {
				if cell.Sysctl != sysctls[j] {
					t.Errorf("%s: cell %d,%d sysctl %q", c.what, i, j, cell.Sysctl)
				}
				if got := rateOf(cell.ExhaustionRate) + " " + cell.Limit; got != c.rates[i][j] {
					t.Errorf("%s: %s x %s = %q, want %q", c.what, r.Client, cell.Sysctl, got, c.rates[i][j])
				}
				switch {
				case c.natRates == nil && cell.NAT != nil:
					t.Errorf("%s: %s x %s has a NAT stage unasked", c.what, r.Client, cell.Sysctl)
				case c.natRates != nil && cell.NAT == nil:
					t.Errorf("%s: %s x %s has no NAT stage", c.what, r.Client, cell.Sysctl)
				case c.natRates != nil:
					if got := rateOf(cell.NAT.ExhaustionRate) + " " + cell.NAT.Binds; got != c.natRates[i][j] {
						t.Errorf("%s: NAT %s x %s = %q, want %q", c.what, r.Client, cell.Sysctl, got, c.natRates[i][j])
					}
				}
				switch {
				case c.idle == nil && (cell.SurvivesIdle != nil || cell.IdleWhy != ""):
					t.Errorf("%s: %s x %s answers --firewall-idle unasked", c.what, r.Client, cell.Sysctl)
				case c.idle != nil && (cell.SurvivesIdle == nil || cell.IdleWhy == ""):
					t.Errorf("%s: %s x %s has no firewall-idle answer", c.what, r.Client, cell.Sysctl)
				case c.idle != nil:
					got := map[bool]string{true: "survives", false: "dies"}[*cell.SurvivesIdle]
					if got != c.idle[i][j] {
						t.Errorf("%s: idle %s x %s = %q, want %q (%s)", c.what, r.Client, cell.Sysctl, got, c.idle[i][j], cell.IdleWhy)
					}
				}
			}
		}
	}
}

// The JSON of a Table is `loadcap capacity --json`: never is null, and the
// optional parts are absent unless asked.
func TestTableJSON(t *testing.T) {
	o := tableOptions(t, []string{"close-client", "keepalive"}, []string{"linux-default"})
	b, err := json.Marshal(NewTable(o))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Targets  int             `json:"targets"`
		Clients  []string        `json:"clients"`
		Sysctls  []string        `json:"sysctls"`
		NAT      json.RawMessage `json:"nat"`
		Idle     json.RawMessage `json:"firewall_idle_s"`
		Loopback *bool           `json:"loopback"`
		Rows     []struct {
			Client string                       `json:"client"`
			Cells  []map[string]json.RawMessage `json:"cells"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Targets != 1 || len(doc.Clients) != 2 || len(doc.Sysctls) != 1 || doc.NAT != nil || doc.Idle != nil || doc.Loopback == nil {
		t.Errorf("document %s", b)
	}
	if len(doc.Rows) != 2 || doc.Rows[0].Client != "close-client" || len(doc.Rows[0].Cells) != 1 {
		t.Fatalf("rows %s", b)
	}
	close, keep := doc.Rows[0].Cells[0], doc.Rows[1].Cells[0]
	if string(close["predicted_exhaustion_rate"]) == "null" || string(close["time_wait_hold_s"]) != "60" || string(close["ports_available"]) != "28232" {
		t.Errorf("close-client cell %v", close)
	}
	if string(keep["predicted_exhaustion_rate"]) != "null" {
		t.Errorf("keepalive cell: rate %s, want null", keep["predicted_exhaustion_rate"])
	}
	for _, k := range []string{"nat", "survives_firewall_idle", "firewall_idle_explanation"} {
		if _, ok := close[k]; ok {
			t.Errorf("cell has %q unasked: %v", k, close)
		}
	}
}

// WriteText: the matrix with a column per sysctl profile, the NAT header
// when asked, each client's explanations once per distinct text.
func TestTableWriteText(t *testing.T) {
	o := tableOptions(t, []string{"close-client", "keepalive"}, []string{"linux-default", "tw-reuse"})
	o.NAT = &NAT{PortLow: 40000, PortHigh: 40100, Addrs: 1, ConntrackTimeWait: 120 * time.Second, ConntrackMax: 262144, Clients: 1, NoEvict: true}
	var b strings.Builder
	if err := NewTable(o).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"predicted port exhaustion, writes/s per target (1 remote target(s); never = ports do not run out; churn = depends on the pool's measured churn)\n\n",
		"client \\ sysctl  linux-default    tw-reuse\nclose-client     470.5 time-wait  28.2k tw-reuse-delay\nkeepalive        never pool       never pool\n\n",
		"behind NAT: 1 clients sharing 40000-40100 x 1 address(es), conntrack TIME_WAIT 120s, nf_conntrack_max 262144, does not evict conntrack TIME_WAIT entries;",
		"client \\ sysctl  linux-default  tw-reuse\nclose-client     0.842 nat      0.842 nat\nkeepalive        never          never\n\n",
		"\nclose-client:\n  [linux-default] client closes; each port stays in TIME_WAIT for 60 s",
		"\nkeepalive:\n  [linux-default] keep-alive pool",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "firewall") {
		t.Errorf("firewall-idle matrix unasked:\n%s", out)
	}
	// A writer that fails: the error comes back.
	bad := errors.New("disk full")
	if err := NewTable(o).WriteText(failWriter{bad}); !errors.Is(err, bad) {
		t.Errorf("WriteText to a failing writer: %v, want %v", err, bad)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }
