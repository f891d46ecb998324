// Command peerbench is `make bench`'s HTTP half: it measures loadcap against
// its peers on the same sink and machine in one run and prints ratios.
//
// Peers: the vegeta CLI built from the vegeta module version in go.mod
// (open model, like loadcap) and wrk (closed loop: the ceiling of what the
// machine can push through this sink). Figures: the highest sustained rate
// (achieved >= 99 % of asked with p99 <= 100 ms) for batch 1 and batch 100,
// achieved/asked at fixed rates, CPU seconds per 10k writes, and peak RSS of
// a 60 s run at loadcap's highest sustained rate.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/sampler"
)

type sample struct {
	asked, achieved float64
	p99ms           float64
	cpu             time.Duration
	rssKB           int64
	writes          float64
	err             string
}

func (s sample) sustained() bool {
	return s.err == "" && s.achieved >= 0.99*s.asked && s.p99ms <= 100
}

type bench struct {
	dir, loadcap, vegeta, wrk, url string
	dur                            time.Duration
}

func main() {
	dur := flag.Duration("duration", 5*time.Second, "length of each measured run")
	rssDur := flag.Duration("rss-duration", 60*time.Second, "length of the RSS run at the highest sustained rate")
	quick := flag.Bool("quick", false, "fewer rates (for a smoke test)")
	flag.Parse()
	if err := run(*dur, *rssDur, *quick); err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
}

func run(dur, rssDur time.Duration, quick bool) error {
	dir, err := os.MkdirTemp("", "loadcap-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{dir: dir, dur: dur, loadcap: filepath.Join(dir, "loadcap"), vegeta: filepath.Join(dir, "vegeta")}
	for _, c := range [][]string{{"go", "build", "-o", b.loadcap, "./cmd/loadcap"}, {"go", "build", "-o", b.vegeta, "github.com/tsenart/vegeta/v12"}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v: %s", c[len(c)-1], err, out)
		}
	}
	if b.wrk, err = exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("find wrk (apt-get install wrk): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	sinkCmd := exec.Command(b.loadcap, "sink", "--listen", addr, "--stats-interval", "0")
	if err := sinkCmd.Start(); err != nil {
		return fmt.Errorf("start sink: %w", err)
	}
	defer func() { sinkCmd.Process.Signal(syscall.SIGTERM); sinkCmd.Wait() }()
	if err := waitPort(addr); err != nil {
		return err
	}
	b.url = "http://" + addr + "/write?db=loadcap"
	host, _ := os.Hostname()
	fmt.Printf("# loadcap peer benchmark (%s, %d s per run, sink: loadcap sink on %s, same machine)\n\n", host, int(dur.Seconds()), addr)

	ladders := map[int][]float64{
		1:   {5000, 10000, 15000, 20000, 30000, 40000, 50000, 60000, 70000, 80000},
		100: {1000, 2000, 3000, 5000, 7500, 10000, 15000, 20000},
	}
	if quick {
		ladders = map[int][]float64{1: {5000, 20000}, 100: {1000, 3000}}
	}
	maxes := map[string]float64{}
	fmt.Println("## Highest sustained rate (achieved >= 99 % of asked, p99 <= 100 ms), keep-alive")
	fmt.Println()
	fmt.Println("| batch | loadcap | vegeta | wrk (closed loop) | loadcap / vegeta | loadcap / wrk |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, batch := range []int{1, 100} {
		body, err := b.body(batch)
		if err != nil {
			return err
		}
		lc := ladder(ladders[batch], func(r float64) sample { return b.loadcapRun(r, batch, dur) })
		vg := ladder(ladders[batch], func(r float64) sample { return b.vegetaRun(r, body, dur) })
		wr, err := b.wrkRun(body, dur)
		if err != nil {
			return err
		}
		maxes[fmt.Sprint("loadcap", batch)] = lc
		fmt.Printf("| %d | %s | %s | %s | %s | %s |\n", batch, rate(lc), rate(vg), rate(wr), ratio(lc, vg), ratio(lc, wr))
	}
	fmt.Println()

	fmt.Println("## Achieved / asked at fixed rates, batch 1 (p99 in ms)")
	fmt.Println()
	fmt.Println("| asked/s | loadcap | vegeta | loadcap >= vegeta |")
	fmt.Println("|---|---|---|---|")
	body1, _ := b.body(1)
	fixed := []float64{5000, 10000, 20000, 50000}
	if quick {
		fixed = []float64{5000, 20000}
	}
	var lcCPU, vgCPU sample
	for _, r := range fixed {
		lc := b.loadcapRun(r, 1, dur)
		vg := b.vegetaRun(r, body1, dur)
		if r == 5000 {
			lcCPU, vgCPU = lc, vg
		}
		fmt.Printf("| %s | %.3f (p99 %.1f) | %.3f (p99 %.1f) | %v |\n", rate(r), lc.achieved/r, lc.p99ms, vg.achieved/r, vg.p99ms, lc.achieved/r >= vg.achieved/r-0.001)
	}
	fmt.Println()

	fmt.Println("## CPU seconds per 10k writes at 5k writes/s, batch 1 (user + system, the load generator only)")
	fmt.Println()
	per := func(s sample) float64 { return s.cpu.Seconds() / (s.writes / 10000) }
	fmt.Printf("| loadcap | vegeta | loadcap / vegeta |\n|---|---|---|\n| %.3f | %.3f | %.2f |\n\n", per(lcCPU), per(vgCPU), per(lcCPU)/per(vgCPU))

	top := maxes["loadcap1"]
	if top == 0 {
		top = 5000
	}
	fmt.Printf("## Peak RSS of a %s run at loadcap's highest sustained rate (%s writes/s, batch 1)\n\n", rssDur, rate(top))
	lcR := b.loadcapRun(top, 1, rssDur)
	vgR := b.vegetaRun(top, body1, rssDur)
	fmt.Printf("| loadcap | vegeta |\n|---|---|\n| %.1f MB (achieved %.0f/s) | %.1f MB (achieved %.0f/s) |\n", float64(lcR.rssKB)/1024, lcR.achieved, float64(vgR.rssKB)/1024, vgR.achieved)
	return nil
}

// ladder returns the highest rate tool sustains: it goes up the ladder until
// two rates in a row fail, then halves the gap between the highest rate
// sustained and the next rung three times, so a coarse ladder does not hide
// a quarter of a tool's range. Every tool gets the same procedure.
func ladder(rates []float64, f func(float64) sample) float64 {
	best, fails, next := 0.0, 0, 0.0
	for _, r := range rates {
		if f(r).sustained() {
			best, fails, next = r, 0, 0
		} else {
			if next == 0 {
				next = r
			}
			if fails++; fails == 2 {
				break
			}
		}
	}
	if best == 0 || next == 0 {
		return best
	}
	lo, hi := best, next
	for i := 0; i < 3; i++ {
		mid := math.Round((lo+hi)/2/100) * 100
		if mid <= lo || mid >= hi {
			break
		}
		if f(mid).sustained() {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

func (b *bench) loadcapRun(r float64, batch int, d time.Duration) sample {
	cmd := exec.Command(b.loadcap, "run", "--targets", b.url, "--rate", strconv.FormatFloat(r, 'f', -1, 64),
		"--duration", d.String(), "--batch", strconv.Itoa(batch), "--json", "--out", "", "--quiet")
	out, s := measure(cmd, r)
	if s.err != "" {
		return s
	}
	var doc results.Document
	if err := json.Unmarshal(out, &doc); err != nil || len(doc.Targets) == 0 {
		s.err = fmt.Sprintf("parse loadcap result: %v", err)
		return s
	}
	t := doc.Targets[0]
	s.achieved, s.p99ms, s.writes = t.AchievedRate, t.LatencyMS.P99, float64(t.Writes)
	if t.WritesFailed > 0 {
		s.err = fmt.Sprintf("%d failed", t.WritesFailed)
	}
	return s
}

func (b *bench) vegetaRun(r float64, body string, d time.Duration) sample {
	resFile := filepath.Join(b.dir, "vegeta.bin")
	cmd := exec.Command(b.vegeta, "attack", "-rate", fmt.Sprintf("%.0f", r), "-duration", d.String(), "-body", body, "-keepalive=true", "-output", resFile)
	cmd.Stdin = strings.NewReader("POST " + b.url + "\n")
	_, s := measure(cmd, r)
	if s.err != "" {
		return s
	}
	out, err := exec.Command(b.vegeta, "report", "-type=json", resFile).Output()
	if err != nil {
		s.err = fmt.Sprintf("vegeta report: %v", err)
		return s
	}
	var rep struct {
		Requests  float64 `json:"requests"`
		Rate      float64 `json:"rate"`
		Success   float64 `json:"success"`
		Latencies struct {
			P99 float64 `json:"99th"`
		} `json:"latencies"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		s.err = fmt.Sprintf("parse vegeta report: %v", err)
		return s
	}
	// vegeta's rate is requests sent per second over the attack.
	s.achieved, s.p99ms, s.writes = rep.Rate, rep.Latencies.P99/1e6, rep.Requests
	if rep.Success < 1 {
		s.err = fmt.Sprintf("success %.3f", rep.Success)
	}
	return s
}

var wrkRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

func (b *bench) wrkRun(body string, d time.Duration) (float64, error) {
	script := filepath.Join(b.dir, "post.lua")
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"text/plain\"\nlocal f = io.open(%q, \"rb\")\nwrk.body = f:read(\"*a\")\nf:close()\n", body)
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		return 0, err
	}
	settle()
	out, err := exec.Command(b.wrk, "-t2", "-c64", "-d", fmt.Sprintf("%ds", int(d.Seconds())), "-s", script, b.url).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %v: %s", err, out)
	}
	m := wrkRPS.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wrk: no Requests/sec in %s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// body writes a batch-line body like loadcap's and returns its path.
func (b *bench) body(batch int) (string, error) {
	g, err := loadgen.NewGenerator(loadgen.DefaultGenConfig())
	if err != nil {
		return "", err
	}
	var enc lineprotocol.Encoder
	var p loadgen.Point
	if err := g.Encode(&enc, &p, 0, time.Now(), batch); err != nil {
		return "", err
	}
	path := filepath.Join(b.dir, fmt.Sprintf("body-%d.lp", batch))
	return path, os.WriteFile(path, enc.Bytes(), 0o644)
}

func measure(cmd *exec.Cmd, r float64) ([]byte, sample) {
	settle()
	s := sample{asked: r}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		s.err = fmt.Sprintf("%v: %s", err, strings.TrimSpace(stderr.String()))
		return nil, s
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		s.rssKB = ru.Maxrss
	}
	return stdout.Bytes(), s
}

func rate(r float64) string {
	if r == 0 {
		return "-"
	}
	if r >= 1000 {
		return strings.TrimSuffix(strconv.FormatFloat(r/1000, 'f', 1, 64), ".0") + "k"
	}
	return strconv.FormatFloat(r, 'f', 0, 64)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(addr string) error {
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("sink on %s did not come up", addr)
}

// settle waits, up to 65 s, until fewer than 1,000 TCP sockets are in
// TIME_WAIT (the "tw" count of /proc/net/sockstat): a run that fell behind
// (vegeta opens a connection per queued request) leaves tens of thousands
// for 60 s, and the next run, whichever tool, would pay for them.
func settle() {
	deadline := time.Now().Add(65 * time.Second)
	for time.Now().Before(deadline) {
		f, err := os.Open("/proc/net/sockstat")
		if err != nil {
			return
		}
		st, err := sampler.ParseSockstat(f)
		f.Close()
		if err != nil || st["TCP"]["tw"] < 1000 {
			return
		}
		time.Sleep(time.Second)
	}
}
