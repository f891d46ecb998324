package results

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParseResult: a result file of any content never panics nor hangs
// the loader; an error names the file; a run document that loads,
// re-encoded (as Save writes it), loads again and re-encodes to the same
// bytes; a matrix that loads re-encodes and loads again too.
func FuzzParseResult(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{}`, `{"id":"x"}`, `{"id":"x","schema":99}`, `{"id":"x","schema":-1}`, `{"kind":"matrix","id":"m"}`,
		`{"kind":"other","id":"x"}`, `{"id":"x","targets":[{"name":""}]}`, `{"id":"x","targets":[{"name":"a","writes":-1}]}`,
		`{"id":"x","targets":[{"name":"a","histograms":{"latency":"!!"}}]}`,
		`{"id":"x","targets":[{"name":"a","histograms":{"latency":"HISTFAA="}}]}`,
		`{"id":"x","achieved_rate":1e400}`, `{"id":"x","started_at":"2026-01-02T03:04:05+01:00"}`, `[`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var file *File
		var err error
		done := make(chan struct{})
		go func() { defer close(done); file, err = parseFile("fuzz.json", data) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("parseFile did not return within 5s")
		}
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.json") && !strings.Contains(err.Error(), "validate") {
				t.Fatalf("error %q names neither the file nor the document", err)
			}
			return
		}
		if (file.Doc == nil) == (file.Matrix == nil) {
			t.Fatalf("want exactly one of Doc and Matrix: %+v", file)
		}
		var v any = file.Doc
		if file.Matrix != nil {
			v = file.Matrix
		}
		first, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatalf("re-encode a loaded result: %v", err)
		}
		again, err := parseFile("again.json", first)
		if err != nil {
			t.Fatalf("a loaded result, re-encoded, does not load: %v\n%s", err, first)
		}
		v = again.Doc
		if again.Matrix != nil {
			v = again.Matrix
		}
		second, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("re-encoded result changed when loaded again:\n%s\n---\n%s", first, second)
		}
	})
}
