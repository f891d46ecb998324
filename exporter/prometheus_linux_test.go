package exporter

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testns"
	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/lab"
)

// The exporters below run inside the test process, next to the load
// generator and other tests, whose CPU the process budget of Run would
// charge to them: they run without a budget (MaxCPU -1).

// serve starts e on a loopback port of the root namespace (sampling its own
// namespace) until the test ends, and has the test Prometheus scrape it
// with the label loadcap_test=<unique id>, which it returns.
func serve(t *testing.T, e *Exporter, targets string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	id := fmt.Sprintf("%s-%d-%d", t.Name(), os.Getpid(), time.Now().UnixNano())
	testservers.AnnounceTarget(t, targets, ln.Addr().String(), map[string]string{"loadcap_test": id})
	return id
}

// waitFor polls cond every 250 ms until it returns true or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
	}
	t.Fatalf("%s: not within %s; last: %s", what, limit, last)
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// loadcapBinary builds cmd/loadcap once per test binary.
func loadcapBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "loadcap-exporter-test-")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "loadcap")
		if out, err := exec.Command("go", "build", "-o", built, "github.com/loadcap/loadcap/cmd/loadcap").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build loadcap: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// TestMain removes the binary loadcapBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if built != "" {
		os.RemoveAll(filepath.Dir(built))
	}
	os.Exit(code)
}

// startExporterCLI runs `loadcap sample --listen 127.0.0.1:0 --netns ns`
// until the test ends and returns the address it serves on (from its
// start-up line).
func startExporterCLI(t *testing.T, exe, ns string) string {
	t.Helper()
	cmd := exec.Command(exe, "sample", "--listen", "127.0.0.1:0", "--netns", ns, "--interval", "500ms")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("loadcap sample --listen: %v", err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("loadcap sample --listen did not stop within 10 s of SIGTERM")
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case line <- sc.Text():
			default:
			}
		}
	}()
	select {
	case l := <-line:
		m := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)/metrics`).FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("loadcap sample --listen said %q", l)
		}
		return m[1]
	case <-time.After(30 * time.Second):
		t.Fatal("loadcap sample --listen printed no address within 30 s")
	}
	return ""
}

// TestPrometheusCountsEqualSS: a real Prometheus scraping `loadcap sample
// --listen` (listening on loopback in the root namespace, sampling a test
// namespace with --netns) returns, per destination, the TIME_WAIT and
// ESTABLISHED counts ss shows, and the projected exhaustion rate that
// `loadcap capacity` prints for the namespace's sysctls.
func TestPrometheusCountsEqualSS(t *testing.T) {
	base, targets := testservers.Prometheus(t)
	t.Parallel()
	exe := loadcapBinary(t)
	ns, profile := labNS(t)
	made := time.Now()
	want := map[string]map[string]int{}
	for _, dst := range []string{"127.0.0.1:8086", "127.0.0.1:8087"} {
		want[dst] = testns.SSStates(t, ns, "dst", dst)
	}
	addr := startExporterCLI(t, exe, ns)
	id := fmt.Sprintf("%s-%d-%d", t.Name(), os.Getpid(), time.Now().UnixNano())
	testservers.AnnounceTarget(t, targets, addr, map[string]string{"loadcap_test": id})
	for _, state := range []string{"TIME_WAIT", "ESTABLISHED"} {
		q := fmt.Sprintf(`loadcap_sockets{loadcap_test=%q,state=%q,destination=~"127.0.0.1:808[67]"}`, id, state)
		waitFor(t, 30*time.Second, q, func() (bool, string) {
			res := testservers.PromQuery(t, base, q)
			got := map[string]int{}
			for _, s := range res {
				got[s.Labels["destination"]] = int(s.Value)
			}
			for dst, w := range want {
				if g, ok := got[dst]; !ok || g != w[state] {
					return false, fmt.Sprintf("prometheus %v, ss %s %d", got, dst, w[state])
				}
			}
			return len(got) == 2, fmt.Sprint(got)
		})
		t.Logf("%s per destination: prometheus equals ss (8086: %d, 8087: %d)", state, want["127.0.0.1:8086"][state], want["127.0.0.1:8087"][state])
	}
	if time.Since(made) > 55*time.Second {
		t.Fatalf("TIME_WAIT sockets made %s ago may have expired before the comparison", time.Since(made))
	}
	out, err := exec.Command(exe, "capacity", "--sysctl", profile, "--client", "close-client", "--loopback", "--json").Output()
	if err != nil {
		t.Fatalf("loadcap capacity: %v", err)
	}
	var doc struct {
		Rows []struct {
			Cells []struct {
				Rate *float64 `json:"predicted_exhaustion_rate"`
			} `json:"cells"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(out, &doc); err != nil || len(doc.Rows) != 1 || len(doc.Rows[0].Cells) != 1 || doc.Rows[0].Cells[0].Rate == nil {
		t.Fatalf("loadcap capacity --json: %v: %s", err, out)
	}
	wantRate := *doc.Rows[0].Cells[0].Rate
	q := fmt.Sprintf(`loadcap_projected_exhaustion_connections_per_second{loadcap_test=%q,destination=~"127.0.0.1:808[67]"}`, id)
	res := testservers.PromQuery(t, base, q)
	if len(res) != 2 {
		t.Fatalf("%s: %v, want two destinations", q, res)
	}
	for _, r := range res {
		if math.Abs(r.Value-wantRate) > 1e-9 {
			t.Errorf("projected exhaustion toward %s: %v, loadcap capacity says %v", r.Labels["destination"], r.Value, wantRate)
		}
	}
	t.Logf("projected exhaustion rate %v/s = loadcap capacity's %v/s (200 ports / 60 s)", res[0].Value, wantRate)
}

// TestPrometheusHeadroomAlert drives, in a namespace with a 200-port range
// (exhaustion at 200/60 = 3.3 connections/s), a close-client load of
// 2.5 connections/s toward :8086 (headroom 1.3x) and keep-alive traffic
// toward :8087. The test Prometheus, evaluating the shipped rules with
// `for:` cut to 15s, fires LoadcapPortHeadroomLow for :8086 and never for
// :8087.
func TestPrometheusHeadroomAlert(t *testing.T) {
	base, targets := testservers.Prometheus(t)
	t.Parallel()
	ns := testns.New(t)
	testns.SetSysctls(t, ns, map[string]string{"net.ipv4.ip_local_port_range": "40000 40199", "net.ipv4.tcp_tw_reuse": "0"})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	errc := make(chan error, 8)
	var closers []io.Closer
	t.Cleanup(func() {
		for _, c := range closers {
			c.Close()
		}
	})
	// Servers: :8086 reads until the client closes, then closes; :8087 echoes.
	var lns [2]net.Listener
	testns.Do(t, ns, func() (err error) {
		for i, port := range []int{8086, 8087} {
			if lns[i], err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
				return err
			}
			closers = append(closers, lns[i])
		}
		return nil
	})
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					io.Copy(c, c) // echo until EOF, then close after the client
				}()
			}
		}()
	}
	// Keep-alive: 4 connections, one round trip each every 250 ms.
	var keep []net.Conn
	testns.Do(t, ns, func() error {
		for i := 0; i < 4; i++ {
			c, err := net.Dial("tcp", "127.0.0.1:8087")
			if err != nil {
				return err
			}
			keep = append(keep, c)
			closers = append(closers, c)
		}
		return nil
	})
	for _, c := range keep {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1)
			for ctx.Err() == nil {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write([]byte{'x'}); err != nil {
					errc <- fmt.Errorf("keep-alive write: %w", err)
					return
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					errc <- fmt.Errorf("keep-alive read: %w", err)
					return
				}
				time.Sleep(250 * time.Millisecond)
			}
		}()
	}
	// Close-client: 2.5 connections/s, at most 180 (the 200-port pool
	// never runs out: at most 150 are in TIME_WAIT at once), each dialed
	// inside the namespace, one byte each way, closed by the client.
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := lab.Do(testns.Path(ns), func() error {
			tick := time.NewTicker(400 * time.Millisecond)
			defer tick.Stop()
			buf := make([]byte, 1)
			for i := 0; i < 180; i++ {
				select {
				case <-ctx.Done():
					return nil
				case <-tick.C:
				}
				c, err := net.DialTimeout("tcp", "127.0.0.1:8086", 5*time.Second)
				if err != nil {
					return fmt.Errorf("close-client dial %d: %w", i, err)
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				_, werr := c.Write([]byte{'x'})
				_, rerr := io.ReadFull(c, buf)
				c.Close()
				if werr != nil || rerr != nil {
					return fmt.Errorf("close-client round trip %d: %v, %v", i, werr, rerr)
				}
			}
			return nil
		})
		if err != nil {
			errc <- err
		}
	}()

	e, err := New(Config{NetNS: ns, Interval: 500 * time.Millisecond, MaxCPU: -1}) // the test process also runs the load: no budget
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	id := serve(t, e, targets)
	start := time.Now()
	waitFor(t, 75*time.Second, "LoadcapPortHeadroomLow firing for 127.0.0.1:8086", func() (bool, string) {
		select {
		case err := <-errc:
			t.Fatal(err)
		default:
		}
		firing := false
		var mine []string
		for _, a := range testservers.PromAlerts(t, base) {
			if a.Labels["loadcap_test"] != id {
				continue
			}
			mine = append(mine, fmt.Sprintf("%s %s %s", a.Labels["alertname"], a.Labels["destination"], a.State))
			if a.Labels["destination"] != "127.0.0.1:8086" {
				t.Fatalf("alert %s for %s (%s): only the close-client destination may alert", a.Labels["alertname"], a.Labels["destination"], a.State)
			}
			if a.Labels["alertname"] == "LoadcapPortHeadroomLow" && a.State == "firing" {
				firing = true
			}
		}
		h := testservers.PromQuery(t, base, fmt.Sprintf(`loadcap_headroom_ratio{loadcap_test=%q,destination=~"127.0.0.1:808[67]"}`, id))
		return firing, fmt.Sprintf("alerts %v, headroom %v", mine, h)
	})
	t.Logf("LoadcapPortHeadroomLow fired %s after the load started", time.Since(start).Round(time.Second))
	if err := e.LastError(); err != nil {
		t.Errorf("a sample failed: %v", err)
	}
	for _, s := range testservers.PromQuery(t, base, fmt.Sprintf(`loadcap_headroom_ratio{loadcap_test=%q,destination=~"127.0.0.1:808[67]"}`, id)) {
		switch d := s.Labels["destination"]; d {
		case "127.0.0.1:8086":
			if s.Value >= 2 || s.Value < 1 {
				t.Errorf("headroom toward %s: %v, want 1.3x (between 1 and 2)", d, s.Value)
			}
		case "127.0.0.1:8087":
			if !math.IsInf(s.Value, 1) {
				t.Errorf("headroom toward keep-alive %s: %v, want +Inf", d, s.Value)
			}
		}
	}
}
