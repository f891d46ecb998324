package results_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loadcap/loadcap/results"
)

func TestLoadFileErrorsNeverPanic(t *testing.T) {
	cases := []struct {
		file string
		want error
		msg  string
	}{
		{"testdata/broken.json", results.ErrNotResult, "broken.json"},
		{"testdata/foreign.json", results.ErrNotResult, "missing id"},
		{"testdata/newer-schema.json", results.ErrNewerSchema, "upgrade loadcap"},
	}
	for _, c := range cases {
		_, err := results.LoadFile(c.file)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: err = %v, want %v mentioning %q", c.file, err, c.want, c.msg)
		}
	}
	// Damaged histograms, bad numbers, truncated JSON at every length: an
	// error, never a panic.
	good, err := os.ReadFile("testdata/close-client-host.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := map[string]string{
		"hist.json":     strings.Replace(string(good), `"latency": "SElTVEZB`, `"latency": "SElTVEZC`, 1),
		"base64.json":   strings.Replace(string(good), `"latency": "SElT`, `"latency": "!!!`, 1),
		"negative.json": strings.Replace(string(good), `"writes_ok": 10000`, `"writes_ok": -1`, 1),
		"noname.json":   strings.Replace(string(good), `"name": "embedded"`, `"name": ""`, 1),
		"kind.json":     `{"kind": "flamegraph", "id": "x"}`,
		"matrix.json":   `{"kind": "matrix", "id": "m", "clients": [], "sysctls": []}`,
	}
	for name, body := range bad {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := results.LoadFile(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err = %v, want an error naming the file", name, err)
		}
	}
	for n := 0; n < len(good); n += 97 {
		p := filepath.Join(dir, "trunc.json")
		os.WriteFile(p, good[:n], 0o644)
		if _, err := results.LoadFile(p); err == nil {
			t.Fatalf("truncated at %d: no error", n)
		}
	}
}

func TestLoadFileKinds(t *testing.T) {
	f, err := results.LoadFile("testdata/matrix.json")
	if err != nil || f.Matrix == nil || f.Doc != nil {
		t.Fatalf("matrix: %+v %v", f, err)
	}
	f, err = results.LoadFile(runFiles[0])
	if err != nil || f.Doc == nil || f.Matrix != nil {
		t.Fatalf("document: %+v %v", f, err)
	}
	if _, err := results.Load("testdata/newer-schema.json"); err == nil {
		t.Fatal("Load accepted a newer schema")
	}
}

func TestExpandFilesDirsGlobs(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b.json", "a.json", ".tmp.json", "notes.txt"} {
		os.WriteFile(filepath.Join(dir, n), []byte("{}"), 0o644)
	}
	got, err := results.Expand([]string{dir, filepath.Join(dir, "*.json"), filepath.Join(dir, "notes.txt")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json"), filepath.Join(dir, "notes.txt")}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{filepath.Join(dir, "nope*.json"), filepath.Join(dir, "missing.json"), t.TempDir()} {
		if _, err := results.Expand([]string{bad}); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestListKeepsGoingPastBrokenFiles(t *testing.T) {
	entries, err := results.List("testdata")
	if err != nil {
		t.Fatal(err)
	}
	// The three broken files are listed with their error, every other
	// file in testdata (result files added for other tests too) loads.
	wantBroken := map[string]bool{"broken.json": true, "foreign.json": true, "newer-schema.json": true}
	jsons, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(jsons) {
		t.Fatalf("%d entries for %d files", len(entries), len(jsons))
	}
	for _, e := range entries {
		if base := filepath.Base(e.Path); (e.Err != nil) != wantBroken[base] {
			t.Errorf("%s: error %v, want broken %v", base, e.Err, wantBroken[base])
		}
	}
	var b strings.Builder
	if err := results.ListReporter(entries)(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, w := range []string{"20261121T173110Z-0758a5", "close-client", "tw-reuse", "196.7", "unreadable", "matrix of 9 cells"} {
		if !strings.Contains(out, w) {
			t.Errorf("listing lacks %q:\n%s", w, out)
		}
	}
}

// A JSON file that is not a result is refused in terms of the file, never
// of the Go types it would decode into.
func TestNotAResultSpeaksOfTheFile(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		`[1,2]`:                     "the file holds a list, a result file holds an object",
		`{"id":5}`:                  `"id" holds a number where a result file has a string`,
		`{"id":"x","targets":{}}`:   `"targets" holds an object where a result file has a list`,
		`{"id":"x","started_at":3}`: "a time (started_at, finished_at, ...) is not an RFC 3339 string",
		`{"id":`:                    "not valid JSON at byte 6",
		`{"id":"x","targets":[{"name":"a","writes":"many"}]}`: `"targets.writes" holds a string where a result file has a whole number`,
	}
	for body, want := range cases {
		p := filepath.Join(dir, "f.json")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := results.LoadFile(p)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want it to name the file and say %q", body, err, want)
			continue
		}
		for _, gotype := range []string{"Go value", "results.", "Time.Unmarshal", "int64", "float64"} {
			if strings.Contains(err.Error(), gotype) {
				t.Errorf("%s: error %q speaks of Go types (%s)", body, err, gotype)
			}
		}
	}
}

// results list takes files and glob patterns as well as directories.
func TestListTakesFilesAndGlobs(t *testing.T) {
	all, err := results.List("testdata")
	if err != nil {
		t.Fatal(err)
	}
	globbed, err := results.List(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(globbed) != len(all) || len(all) == 0 {
		t.Fatalf("glob listed %d, directory %d", len(globbed), len(all))
	}
	one, err := results.List(all[0].Path, all[1].Path)
	if err != nil || len(one) != 2 || one[0].Path != all[0].Path {
		t.Fatalf("two files: %v %v", one, err)
	}
	if _, err := results.List(filepath.Join("testdata", "nope-*.json")); err == nil {
		t.Error("a pattern that matches nothing: no error")
	}
}
