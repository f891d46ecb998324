// Command exportersoak measures `loadcap sample --listen` (the exporter) at
// a steady ~30,000 sockets for a long time: it makes a throw-away network
// namespace, holds -established ESTABLISHED pairs and opens and closes
// connections (client first) at the rate that keeps the rest of -sockets in
// TIME_WAIT, starts the loadcap binary's exporter sampling that namespace
// (default interval) on a loopback port, scrapes it every -scrape, and every
// -every prints the exporter's resident set size, its CPU share of one core,
// the CPU per sample and the sockets it saw. At the end it compares the RSS
// of the first row after -warmup with the last and exits 1 if it grew by
// more than -tolerance. It is `make soak-exporter`, not part of `make test`.
//
//	go build -o bin/loadcap ./cmd/loadcap
//	go run ./internal/exportersoak -exe bin/loadcap -duration 10m
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/loadcap/loadcap/lab"
)

func main() {
	exe := flag.String("exe", "bin/loadcap", "the loadcap binary to run as the exporter")
	duration := flag.Duration("duration", 10*time.Minute, "length of the soak, after the fill")
	sockets := flag.Int("sockets", 30000, "sockets to keep in the namespace")
	established := flag.Int("established", 1000, "of which ESTABLISHED pairs (two sockets each); the rest are kept in TIME_WAIT by churn")
	every := flag.Duration("every", 30*time.Second, "interval of the table")
	scrapeEvery := flag.Duration("scrape", 5*time.Second, "scrape interval")
	warmup := flag.Duration("warmup", 30*time.Second, "the start row is the first at or after this")
	tolerance := flag.Float64("tolerance", 0.10, "largest allowed RSS growth from the start row to the end")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := soak(ctx, *exe, *duration, *sockets, *established, *every, *scrapeEvery, *warmup, *tolerance); err != nil {
		fmt.Fprintln(os.Stderr, "exportersoak:", err)
		os.Exit(1)
	}
}

func soak(ctx context.Context, exe string, duration time.Duration, sockets, established int, every, scrapeEvery, warmup time.Duration, tolerance float64) error {
	churn := float64(sockets-2*established) / 60 // connections/s that keep the rest in TIME_WAIT
	if churn <= 0 || every <= 0 || scrapeEvery <= 0 {
		return errors.New("check flags: want -sockets above 2 x -established and positive intervals")
	}
	ns := fmt.Sprintf("loadcap-soak-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", ns, err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	nsPath := "/var/run/netns/" + ns
	var lns []net.Listener
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		for _, l := range lns {
			l.Close()
		}
	}()
	err := lab.Do(nsPath, func() error {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			return fmt.Errorf("lo up: %v: %s", err, out)
		}
		for k, v := range map[string]string{"ipv4/ip_local_port_range": "1024 65535", "ipv4/tcp_tw_reuse": "0", "ipv4/tcp_max_tw_buckets": "262144"} {
			if err := os.WriteFile("/proc/sys/net/"+k, []byte(v), 0o644); err != nil {
				return err
			}
		}
		for p := 8086; p < 8090; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				return err
			}
			lns = append(lns, l)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set up namespace: %w", err)
	}
	for _, l := range lns {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(io.Discard, c); c.Close() }() // holds until the client closes
			}
		}()
	}
	err = lab.Do(nsPath, func() error {
		for i := 0; i < established; i++ {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", 8086+i%4))
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("open established connections: %w", err)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loadErr := make(chan error, 1)
	go func() {
		loadErr <- lab.Do(nsPath, func() error {
			// Batches every 10 ms, bounded by the context.
			start := time.Now()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			opened := 0
			for {
				select {
				case <-loadCtx.Done():
					return nil
				case <-tick.C:
				}
				due := int(time.Since(start).Seconds() * churn)
				for ; opened < due; opened++ {
					c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", 8086+opened%4), 5*time.Second)
					if err != nil {
						return fmt.Errorf("churn dial %d: %w", opened, err)
					}
					c.Close()
				}
			}
		})
	}()
	fmt.Printf("namespace %s: %d ESTABLISHED pairs, churn %.0f connections/s (client closes): filling TIME_WAIT for 60 s\n", ns, established, churn)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-loadErr:
		return fmt.Errorf("churn: %v", err)
	case <-time.After(60 * time.Second):
	}

	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(exe, "sample", "--listen", addr, "--netns", ns)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start exporter: %w", err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	pid := cmd.Process.Pid
	clk := float64(100) // USER_HZ
	began := time.Now()
	cpu0, _ := procCPU(pid, clk)
	fmt.Printf("exporter pid %d at http://%s/metrics, scraped every %s\n", pid, addr, scrapeEvery)
	fmt.Printf("%8s %9s %12s %14s %10s %9s %10s\n", "t", "rss_MB", "cpu_%core", "cpu_ms/sample", "samples", "sockets", "scrape_ms")
	var rows []row
	var prevCPU, prevSampleCPU, prevSamples float64
	prevCPU = cpu0
	prevT := began
	scrapeT := time.NewTicker(scrapeEvery)
	defer scrapeT.Stop()
	rowT := time.NewTicker(every)
	defer rowT.Stop()
	end := time.After(duration)
	var scrapes int
	var scrapeTotal time.Duration
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-loadErr:
			return fmt.Errorf("churn: %v", err)
		case <-end:
			return verdict(rows, warmup, tolerance)
		case <-scrapeT.C:
			t0 := time.Now()
			if _, err := scrape(addr); err != nil {
				return err
			}
			scrapes++
			scrapeTotal += time.Since(t0)
		case <-rowT.C:
			m, err := scrape(addr)
			if err != nil {
				return err
			}
			rss, err := procRSS(pid)
			if err != nil {
				return err
			}
			cpu, err := procCPU(pid, clk)
			if err != nil {
				return err
			}
			now := time.Now()
			sc, n := m["loadcap_exporter_sample_cpu_seconds_total"], m["loadcap_exporter_samples_total"]
			perSample := 0.0
			if n > prevSamples {
				perSample = (sc - prevSampleCPU) / (n - prevSamples) * 1000
			}
			share := (cpu - prevCPU) / now.Sub(prevT).Seconds() * 100
			avgScrape := 0.0
			if scrapes > 0 {
				avgScrape = float64(scrapeTotal.Microseconds()) / float64(scrapes) / 1000
			}
			r := row{t: now.Sub(began).Round(time.Second), rss: rss}
			rows = append(rows, r)
			fmt.Printf("%8s %9.1f %12.2f %14.2f %10.0f %9.0f %10.2f\n", r.t, rss, share, perSample, n, m["sockets"], avgScrape)
			prevCPU, prevT, prevSampleCPU, prevSamples = cpu, now, sc, n
		}
	}
}

// row is one line of the table: when, and the exporter's RSS in MB.
type row struct {
	t   time.Duration
	rss float64
}

// verdict compares the RSS of the first row at or after warmup with the
// last one.
func verdict(rows []row, warmup time.Duration, tolerance float64) error {
	start := -1
	for i, r := range rows {
		if r.t >= warmup {
			start = i
			break
		}
	}
	if start < 0 || start == len(rows)-1 {
		return errors.New("no two rows after the warm-up to compare")
	}
	a, b := rows[start].rss, rows[len(rows)-1].rss
	lo, hi := a, a
	for _, r := range rows[start:] {
		lo, hi = min(lo, r.rss), max(hi, r.rss)
	}
	growth := (b - a) / a
	fmt.Printf("RSS after warm-up %.1f MB, at the end %.1f MB (%+.1f %%), range %.1f-%.1f MB\n", a, b, growth*100, lo, hi)
	if growth > tolerance {
		return fmt.Errorf("RSS grew by %.1f %%, more than %.0f %%", growth*100, tolerance*100)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// scrape GETs /metrics and returns the unlabelled series by name, and
// under "sockets" the sum of loadcap_sockets.
func scrape(addr string) (map[string]float64, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		name := l[:i]
		if strings.HasPrefix(name, "loadcap_sockets{") {
			out["sockets"] += v
		}
		out[name] = v
	}
	return out, sc.Err()
}

// procRSS returns VmRSS of pid in MB.
func procRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// procCPU returns the user+system CPU seconds of pid.
func procCPU(pid int, clk float64) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return (u + st) / clk, nil
}
