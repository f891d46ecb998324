// Command soak runs loadcap for a long time at a steady rate against the
// embedded sink and checks that the process does not grow: it prints the
// resident set size, the goroutine count and the Go heap every -every, then
// compares the first sample after warm-up with the last one and exits 1 if
// either grew by more than -tolerance. It is `make soak`, not part of
// `make test`.
//
//	go run ./internal/soak -duration 10m -rate 1k
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/run"
)

type sample struct {
	t          time.Duration
	rssMB      float64
	goroutines int
	heapMB     float64
}

func main() {
	duration := flag.Duration("duration", 10*time.Minute, "length of the soak run")
	rate := flag.String("rate", "1k", "writes per second to the embedded sink")
	batch := flag.Int("batch", 100, "lines per write")
	client := flag.String("client", "keepalive", "client profile")
	workers := flag.Int("workers", 0, "workers per target, fixed for the whole soak (0: loadcap's default, 8 to start, growing up to 512 when all are busy)")
	every := flag.Duration("every", 30*time.Second, "sampling interval of the table")
	warmup := flag.Duration("warmup", time.Minute, "the start sample is the first one at or after this (the pool and the workers have grown by then)")
	sampleInterval := flag.Duration("sample-interval", 250*time.Millisecond, "loadcap's socket-state sampling interval (its series is kept in memory for the result document)")
	tolerance := flag.Float64("tolerance", 0.10, "largest allowed growth from the start sample to the end (0.10: 10 %)")
	flag.Parse()
	if err := soak(*duration, *rate, *batch, *client, *workers, *every, *warmup, *sampleInterval, *tolerance); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func soak(duration time.Duration, rateS string, batch int, client string, workers int, every, warmup, sampleInterval time.Duration, tolerance float64) error {
	rate, err := capacity.ParseRate(rateS)
	if err != nil {
		return fmt.Errorf("parse -rate: %w", err)
	}
	if every <= 0 || warmup < 0 || warmup >= duration {
		return fmt.Errorf("check flags: want -every above 0 and -warmup within -duration")
	}
	out, err := os.MkdirTemp("", "loadcap-soak-")
	if err != nil {
		return fmt.Errorf("make result directory: %w", err)
	}
	defer os.RemoveAll(out)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := run.Config{
		Targets: []string{"embedded"}, Rate: rate, Duration: duration, Batch: batch,
		Client: client, Sysctl: "host", Gen: loadgen.DefaultGenConfig(), Out: out,
		Timeout: 10 * time.Second, Version: "soak", SampleInterval: sampleInterval, Workers: workers,
		// A fixed worker count: a load spike from elsewhere on a shared
		// machine then makes writes late (counted) instead of growing the
		// worker pool, which would pass for a goroutine leak.
		MaxWorkers: workers,
	}

	fmt.Printf("soak: %s at %s writes/s, batch %d, client %s, workers %d, sample interval %s, embedded sink\n", duration, rateS, batch, client, workers, sampleInterval)
	fmt.Printf("heap_mb is the live heap after a forced GC\n")
	fmt.Printf("%8s  %8s  %10s  %8s\n", "t", "rss_mb", "goroutines", "heap_mb")
	start := time.Now()
	var samples []sample
	take := func() {
		s := measure(time.Since(start).Round(time.Second))
		samples = append(samples, s)
		fmt.Printf("%8s  %8.1f  %10d  %8.1f\n", s.t, s.rssMB, s.goroutines, s.heapMB)
	}
	take()

	type result struct {
		out *run.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		o, err := run.Execute(ctx, cfg)
		done <- result{o, err}
	}()
	tk := time.NewTicker(every)
	defer tk.Stop()
	// The end sample is taken just before the pacing stops, so that it
	// measures the run in steady state rather than its teardown.
	endT := time.NewTimer(duration - time.Second)
	defer endT.Stop()
	end := -1
	var res result
loop:
	for {
		select {
		case <-tk.C:
			take()
		case <-endT.C:
			take()
			end = len(samples) - 1
		case res = <-done:
			break loop
		}
	}
	if res.err != nil {
		return fmt.Errorf("run: %w", res.err)
	}
	// After the run: every goroutine of the run must be gone.
	runtime.GC()
	time.Sleep(time.Second)
	after := measure(time.Since(start).Round(time.Second))
	fmt.Printf("%8s  %8.1f  %10d  %8.1f  (after the run)\n", after.t, after.rssMB, after.goroutines, after.heapMB)

	tr := res.out.Doc.Targets[0]
	fmt.Printf("writes %d, ok %d, failed %d, achieved %.1f/s, late %d, p99 %.2f ms, max %.2f ms, interrupted %v\n",
		tr.Writes, tr.WritesOK, tr.WritesFailed, tr.AchievedRate, tr.LateStarts, tr.LatencyMS.P99, tr.LatencyMS.Max, res.out.Doc.Interrupted)
	// What the run keeps in memory by design, growing with its length:
	// the sampler series and the timeline of the result document.
	if b, err := json.Marshal(res.out.Doc); err == nil {
		n := 0
		if res.out.Doc.Sampler != nil {
			n = len(res.out.Doc.Sampler.Series)
		}
		fmt.Printf("result document: %d sampler samples, %d timeline intervals, %.1f MB as JSON\n", n, len(res.out.Doc.Timeline), float64(len(b))/(1<<20))
	}

	var first *sample
	for i := range samples {
		if samples[i].t >= warmup {
			first = &samples[i]
			break
		}
	}
	if end < 0 {
		end = len(samples) - 1
	}
	last := samples[end]
	if first == nil || first == &samples[end] {
		return fmt.Errorf("compare samples: the run ended before a sample after the warm-up and a later one")
	}
	rss := last.rssMB / first.rssMB
	gor := float64(last.goroutines) / float64(first.goroutines)
	heap := last.heapMB / first.heapMB
	fmt.Printf("start (t=%s) vs end (t=%s, just before the pacing stopped): rss x%.3f, goroutines x%.3f, heap x%.3f (informative); goroutines before %d, after the run %d\n",
		first.t, last.t, rss, gor, heap, samples[0].goroutines, after.goroutines)
	var failed []string
	if rss > 1+tolerance {
		failed = append(failed, fmt.Sprintf("rss grew x%.3f", rss))
	}
	if gor > 1+tolerance {
		failed = append(failed, fmt.Sprintf("goroutines grew x%.3f", gor))
	}
	if after.goroutines > samples[0].goroutines+2 {
		failed = append(failed, fmt.Sprintf("%d goroutines left after the run (%d before)", after.goroutines, samples[0].goroutines))
	}
	if tr.WritesFailed > 0 {
		failed = append(failed, fmt.Sprintf("%d writes failed", tr.WritesFailed))
	}
	if len(failed) > 0 {
		fmt.Printf("FAIL: %s (tolerance %.0f %%)\n", strings.Join(failed, "; "), tolerance*100)
		return fmt.Errorf("soak failed")
	}
	fmt.Printf("PASS: rss and goroutines within %.0f %% from t=%s to the end\n", tolerance*100, first.t)
	return nil
}

func measure(t time.Duration) sample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return sample{t: t, rssMB: rssMB(), goroutines: runtime.NumGoroutine(), heapMB: float64(ms.HeapAlloc) / (1 << 20)}
}

// rssMB reads VmRSS from /proc/self/status (0 when unavailable).
func rssMB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(fields[1], 64)
			return kb / 1024
		}
	}
	return 0
}
