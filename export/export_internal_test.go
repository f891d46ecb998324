package export

import (
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/loadcap/loadcap/loadgen"
)

// A full export buffer drops and counts: the worker never waits.
func TestVegetaExportNeverBlocksAWorker(t *testing.T) {
	v := &vegetaExport{names: []string{"a"}, ch: make(chan vegeta.Result, 1)}
	res := &loadgen.Result{Status: 204}
	start := time.Now()
	// Nothing reads the channel: a send that waited would never return, so
	// a bounded wait for the loop (not a time limit on it) tells.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			v.onResult(loadgen.WriteRecord{Seq: uint64(i), Intended: start, End: start.Add(time.Millisecond), Result: res})
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("1000 results with a full buffer: onResult blocked")
	}
	if v.drops.Load() != 999 {
		t.Fatalf("drops %d, want 999", v.drops.Load())
	}
}

func TestVegetaResultFields(t *testing.T) {
	at := time.Unix(100, 0)
	ok := VegetaResult("t", loadgen.WriteRecord{Seq: 3, Intended: at, End: at.Add(5 * time.Millisecond), Result: &loadgen.Result{Status: 204}})
	if ok.Attack != "t" || ok.Seq != 3 || ok.Code != 204 || ok.Latency != 5*time.Millisecond || !ok.Timestamp.Equal(at) || ok.Error != "" {
		t.Fatalf("ok: %+v", ok)
	}
	port := VegetaResult("t", loadgen.WriteRecord{Intended: at, End: at, Result: &loadgen.Result{Class: loadgen.ClassEADDRNOTAVAIL}})
	if port.Code != 0 || port.Error != "EADDRNOTAVAIL" {
		t.Fatalf("port error: %+v", port)
	}
	sql := VegetaResult("t", loadgen.WriteRecord{Intended: at, End: at, Result: &loadgen.Result{}})
	if sql.Code != 200 {
		t.Fatalf("a successful non-HTTP write: %+v", sql)
	}
	e500 := VegetaResult("t", loadgen.WriteRecord{Intended: at, End: at, Result: &loadgen.Result{Class: "http_5xx", Status: 500}})
	if e500.Code != 500 || e500.Error != "http_5xx 500" {
		t.Fatalf("500: %+v", e500)
	}
}
