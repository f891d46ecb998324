package exporter

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/internal/testns"
	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/profiles"
	"github.com/loadcap/loadcap/sampler"
)

// labNS makes a namespace with a 200-port range and no TIME_WAIT reuse
// (so that loopback destinations behave like remote ones), with 30
// TIME_WAIT and 5 ESTABLISHED client sockets toward 127.0.0.1:8086 and 12
// and 3 toward 127.0.0.1:8087. It returns the namespace and the path of a
// sysctl profile file holding the same sysctls.
func labNS(t *testing.T) (ns, profile string) {
	t.Helper()
	sys := map[string]string{"net.ipv4.ip_local_port_range": "40000 40199", "net.ipv4.tcp_tw_reuse": "0"}
	ns = testns.New(t)
	testns.SetSysctls(t, ns, sys)
	testns.MakeSockets(t, ns, []uint16{8086}, 30, 5, 10*time.Second)
	testns.MakeSockets(t, ns, []uint16{8087}, 12, 3, 10*time.Second)
	profile = filepath.Join(t.TempDir(), "lab.conf")
	var b bytes.Buffer
	for k, v := range sys {
		b.WriteString(k + " = " + v + "\n")
	}
	if err := os.WriteFile(profile, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return ns, profile
}

// capacityRate is what `loadcap capacity --sysctl PROFILE --client
// close-client --loopback --targets 1` predicts, in writes (= connections)
// per second per target: the same library calls as the command.
func capacityRate(t *testing.T, profile string) float64 {
	t.Helper()
	s, err := profiles.LoadSysctl(profile)
	if err != nil {
		t.Fatal(err)
	}
	k, err := capacity.KernelFromSysctl(s.Map())
	if err != nil {
		t.Fatal(err)
	}
	c, err := profiles.LoadClient("close-client")
	if err != nil {
		t.Fatal(err)
	}
	p := capacity.Predict(capacity.Input{Kernel: k, Client: capacity.ClientFromProfile(c), Targets: 1, Loopback: true})
	return p.ExhaustionRate
}

// scrape GETs /metrics and returns the body and the parsed families.
func scrape(t *testing.T, url string) ([]byte, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d, %v", resp.StatusCode, err)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return body, fams
}

// serveOnce starts an exporter for cfg with an hour's interval and no Run
// (only New samples), serves it until the test ends and scrapes it once.
func serveOnce(t *testing.T, cfg Config) (url string, body []byte, fams map[string]*dto.MetricFamily) {
	t.Helper()
	cfg.Interval = time.Hour
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	srv := httptest.NewServer(e.Handler())
	t.Cleanup(srv.Close)
	body, fams = scrape(t, srv.URL)
	return srv.URL, body, fams
}

// value returns the value of the series of fam whose labels include want;
// ok is false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	fam := fams[name]
	if fam == nil {
		return 0, false
	}
next:
	for _, m := range fam.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

// distinctLocalPorts counts the distinct local ports in [lo, hi] of the
// TCP sockets `ss -tan` lists in ns.
func distinctLocalPorts(t *testing.T, ns string, lo, hi int) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "ss", "-tanH").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	ports := map[int]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		i := strings.LastIndexByte(f[3], ':')
		if p, err := strconv.Atoi(f[3][i+1:]); err == nil && p >= lo && p <= hi {
			ports[p] = true
		}
	}
	return len(ports)
}

// promtoolCheck runs `promtool check metrics` on a scrape.
func promtoolCheck(t *testing.T, body []byte) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		if testservers.Required() {
			t.Fatal("promtool not found (Debian package prometheus; scripts/testenv.sh up installs it)")
		}
		t.Skip("promtool not found")
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestExporterMatchesSS scrapes an exporter sampling a namespace with known
// sockets: the per-destination counts are ss's, the pools follow the 200-port
// range, the projection is `loadcap capacity`'s, a scrape takes no sample, and
// promtool accepts the exposition.
func TestExporterMatchesSS(t *testing.T) {
	ns, profile := labNS(t)
	for _, source := range []string{sampler.SourceNetlink, sampler.SourceProc} {
		t.Run(source, func(t *testing.T) {
			url, body, fams := serveOnce(t, Config{NetNS: ns, Source: source})
			for _, dst := range []string{"127.0.0.1:8086", "127.0.0.1:8087"} {
				want := testns.SSStates(t, ns, "dst", dst)
				for _, st := range exportedStates {
					got, ok := value(fams, "loadcap_sockets", map[string]string{"view": "client", "destination": dst, "state": st.String()})
					if !ok || int(got) != want[st.String()] {
						t.Errorf("%s %s: exporter %v (present %v), ss %d", dst, st, got, ok, want[st.String()])
					}
				}
				inUse := want["TIME_WAIT"] + want["ESTABLISHED"]
				if got, _ := value(fams, "loadcap_ports_in_use", map[string]string{"destination": dst}); int(got) != inUse {
					t.Errorf("%s: ports in use %v, want %d", dst, got, inUse)
				}
				if got, _ := value(fams, "loadcap_ports_available", map[string]string{"destination": dst}); int(got) != 200-inUse {
					t.Errorf("%s: ports available %v, want %d", dst, got, 200-inUse)
				}
				if got, _ := value(fams, "loadcap_projected_exhaustion_connections_per_second", map[string]string{"destination": dst}); math.Abs(got-capacityRate(t, profile)) > 1e-9 {
					t.Errorf("%s: projected exhaustion %v, loadcap capacity says %v", dst, got, capacityRate(t, profile))
				}
				// All TIME_WAIT sockets were made seconds ago.
				if got, _ := value(fams, "loadcap_time_wait_age_seconds", map[string]string{"destination": dst, "q": "0.99"}); got < 0 || got > 15 {
					t.Errorf("%s: TIME_WAIT age p99 %v s, want 0-15 s", dst, got)
				}
			}
			if got, _ := value(fams, "loadcap_port_range_ports", nil); got != 200 {
				t.Errorf("port_range_ports %v, want 200", got)
			}
			// connect() may give two destinations the same port (unique
			// per 4-tuple): the bind() pool counts distinct ports.
			if got, _ := value(fams, "loadcap_bind_ports_in_use", nil); int(got) != distinctLocalPorts(t, ns, 40000, 40199) {
				t.Errorf("bind_ports_in_use %v, ss shows %d distinct local ports in the range", got, distinctLocalPorts(t, ns, 40000, 40199))
			}
			if got, _ := value(fams, "loadcap_sysctl", map[string]string{"name": "net.ipv4.tcp_tw_reuse"}); got != 0 {
				t.Errorf("sysctl tcp_tw_reuse %v, want 0", got)
			}
			if got, _ := value(fams, "loadcap_tcp_active_opens_total", nil); got != 50 {
				t.Errorf("tcp_active_opens_total %v, want 50", got)
			}
			if got, _ := value(fams, "loadcap_exporter_info", map[string]string{"source": source}); got != 1 {
				t.Errorf("exporter_info source=%s missing", source)
			}
			scrape(t, url)
			if _, fams := scrape(t, url); func() float64 { v, _ := value(fams, "loadcap_exporter_samples_total", nil); return v }() != 1 {
				t.Errorf("samples_total after three scrapes: want 1 (a scrape never samples)")
			}
			promtoolCheck(t, body)
		})
	}
}

// TestExporterTopAndOther: with --top 1 the fullest destination keeps its
// series and the rest (the other client destination, the listeners and the
// accepted sockets) are summed under other.
func TestExporterTopAndOther(t *testing.T) {
	ns, _ := labNS(t)
	e, err := New(Config{NetNS: ns, Top: 1, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	st := e.Latest()
	if len(st.Destinations) != 2 || st.Destinations[0].Name != "127.0.0.1:8086" || st.Destinations[1].Name != Other {
		t.Fatalf("destinations %v", st.Destinations)
	}
	all := testns.SSStates(t, ns)
	o := st.Destinations[1]
	for _, s := range exportedStates {
		want := all[s.String()] - st.Destinations[0].States[s]
		if o.States[s] != want {
			t.Errorf("other %s: %d, want %d (ss total minus the top destination)", s, o.States[s], want)
		}
	}
	// 8087's pool (15 ports) is the fullest of the rest.
	if o.PortsInUse != 15 {
		t.Errorf("other ports in use %d, want 15", o.PortsInUse)
	}
}

// TestExhaustedPoolIsEADDRNOTAVAIL checks the kernel facts behind the
// LoadcapPortsExhausted alert on this kernel: once every port of the range is
// held toward a destination, connect() fails with EADDRNOTAVAIL while the
// exporter shows 0 ports available, and Tcp AttemptFails does not count the
// failure (no SYN is sent), so the state is what an alert can see.
func TestExhaustedPoolIsEADDRNOTAVAIL(t *testing.T) {
	ns := testns.New(t)
	testns.SetSysctls(t, ns, map[string]string{"net.ipv4.ip_local_port_range": "40000 40009", "net.ipv4.tcp_tw_reuse": "0"})
	testns.MakeSockets(t, ns, []uint16{8086}, 4, 6, 10*time.Second) // 10 ports held
	e, err := New(Config{NetNS: ns, Port: 8086, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	before := e.Latest()
	if d := before.Destinations; len(d) != 1 || d[0].PortsAvailable != 0 || d[0].PortsInUse != 10 {
		t.Fatalf("destinations %+v: want 127.0.0.1:8086 with 10 ports in use, 0 available", d)
	}
	var connectErr error
	testns.Do(t, ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		connectErr = unix.Connect(fd, &unix.SockaddrInet4{Port: 8086, Addr: [4]byte{127, 0, 0, 1}})
		return nil
	})
	if !errors.Is(connectErr, unix.EADDRNOTAVAIL) {
		t.Fatalf("connect with the pool full: %v, want EADDRNOTAVAIL", connectErr)
	}
	if _, err := e.sample(); err != nil {
		t.Fatal(err)
	}
	after := e.Latest()
	if after.Counters.AttemptFails != before.Counters.AttemptFails || after.Counters.ActiveOpens != before.Counters.ActiveOpens {
		t.Errorf("AttemptFails %d -> %d, ActiveOpens %d -> %d: want unchanged by EADDRNOTAVAIL",
			before.Counters.AttemptFails, after.Counters.AttemptFails, before.Counters.ActiveOpens, after.Counters.ActiveOpens)
	}
}

// TestExporterServerView: with --local-port the sockets are keyed by the
// local ip:port (the server's view), equal to ss's count of sockets on that
// port, and no port projection is served.
func TestExporterServerView(t *testing.T) {
	ns, _ := labNS(t)
	_, _, fams := serveOnce(t, Config{NetNS: ns, LocalPort: 8086})
	want := testns.SSStates(t, ns, "sport", "=", ":8086")
	if want["LISTEN"] != 1 || want["ESTABLISHED"] != 5 {
		t.Fatalf("ss sport 8086: %v", want)
	}
	for _, st := range exportedStates {
		got, ok := value(fams, "loadcap_sockets", map[string]string{"view": "server", "destination": "127.0.0.1:8086", "state": st.String()})
		if !ok || int(got) != want[st.String()] {
			t.Errorf("server view %s: exporter %v (present %v), ss %d", st, got, ok, want[st.String()])
		}
	}
	if fams["loadcap_headroom_ratio"] != nil || fams["loadcap_ports_in_use"] != nil {
		t.Error("server view serves a port projection")
	}
	if n := len(fams["loadcap_sockets"].GetMetric()); n != len(exportedStates) {
		t.Errorf("%d loadcap_sockets series, want one local endpoint's %d", n, len(exportedStates))
	}
}
