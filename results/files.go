package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"text/tabwriter"
)

// File is one loaded result file: a run's Document or a lab Matrix summary.
// Exactly one of Doc and Matrix is set.
type File struct {
	Path   string
	Doc    *Document
	Matrix *Matrix
}

// ErrNotResult is wrapped by load errors for files that are not loadcap
// result files at all (another JSON file, a half-written file).
var ErrNotResult = errors.New("not a loadcap result file")

// ErrNewerSchema is wrapped by load errors for documents written by a newer
// loadcap than this one.
var ErrNewerSchema = errors.New("result schema is newer than this loadcap")

// probe is the part of any result file that tells what it is.
type probe struct {
	Kind   string `json:"kind"`
	Schema int    `json:"schema"`
	ID     string `json:"id"`
}

// LoadFile reads a result document or a matrix summary. A broken file, a
// foreign file or one from a newer schema gives an error naming the file;
// it never panics.
func LoadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load result: %w", err)
	}
	return parseFile(path, b)
}

func parseFile(path string, b []byte) (*File, error) {
	var p probe
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("load result %s: %w: %s", path, ErrNotResult, jsonProblem(err))
	}
	f := &File{Path: path}
	if p.Kind == MatrixKind {
		var m Matrix
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("load matrix %s: %w: %s", path, ErrNotResult, jsonProblem(err))
		}
		if err := ValidateMatrix(&m); err != nil {
			return nil, fmt.Errorf("load matrix %s: %w", path, err)
		}
		f.Matrix = &m
		return f, nil
	}
	if p.Kind != "" {
		return nil, fmt.Errorf("load result %s: %w: unknown kind %q", path, ErrNotResult, p.Kind)
	}
	if p.Schema > SchemaVersion {
		return nil, fmt.Errorf("load result %s: %w: schema %d, this loadcap reads up to %d; upgrade loadcap", path, ErrNewerSchema, p.Schema, SchemaVersion)
	}
	var doc Document
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("load result %s: %w: %s", path, ErrNotResult, jsonProblem(err))
	}
	if err := Validate(&doc); err != nil {
		return nil, fmt.Errorf("load result %s: %w", path, err)
	}
	f.Doc = &doc
	return f, nil
}

// jsonProblem says what is wrong with a file that does not decode, in
// terms of the file (its JSON), not of the Go types it decodes into.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON at byte %d (%s)", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &te) && te.Field == "":
		return fmt.Sprintf("the file holds %s, a result file holds an object", jsonKind(te.Value))
	case errors.As(err, &te):
		return fmt.Sprintf("%q holds %s where a result file has %s", te.Field, jsonKind(te.Value), goKind(te.Type))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends too early (a truncated file?)"
	case strings.HasPrefix(err.Error(), "Time.") || strings.HasPrefix(err.Error(), "parsing time"):
		return "a time (started_at, finished_at, ...) is not an RFC 3339 string"
	}
	return err.Error()
}

// jsonKind names a JSON value kind as encoding/json reports it.
func jsonKind(v string) string {
	switch {
	case v == "array":
		return "a list"
	case v == "object":
		return "an object"
	case v == "string":
		return "a string"
	case v == "bool":
		return "true or false"
	case strings.HasPrefix(v, "number"):
		return "a number"
	}
	return v
}

// goKind names, in JSON terms, what a Go type decodes from.
func goKind(t reflect.Type) string {
	if t == nil {
		return "another kind of value"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		if t.String() == "time.Time" {
			return "a time (RFC 3339 string)"
		}
		return "an object"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Pointer:
		return goKind(t.Elem())
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	}
	return "another kind of value"
}

// Validate checks that doc is a plausible loadcap result document: an id,
// a known schema, named targets with non-negative counts, finite rates
// and decodable histograms.
func Validate(doc *Document) error {
	if doc.ID == "" {
		return fmt.Errorf("validate result: %w: missing id", ErrNotResult)
	}
	if doc.Schema > SchemaVersion {
		return fmt.Errorf("validate result %s: %w: schema %d, this loadcap reads up to %d; upgrade loadcap", doc.ID, ErrNewerSchema, doc.Schema, SchemaVersion)
	}
	if doc.Schema < 0 {
		return fmt.Errorf("validate result %s: bad schema %d", doc.ID, doc.Schema)
	}
	if bad(doc.AchievedRate) || bad(doc.Config.Rate) {
		return fmt.Errorf("validate result %s: bad rate (achieved %v, asked %v)", doc.ID, doc.AchievedRate, doc.Config.Rate)
	}
	for i, t := range doc.Targets {
		if t.Name == "" {
			return fmt.Errorf("validate result %s: target %d has no name", doc.ID, i)
		}
		if t.Writes < 0 || t.WritesOK < 0 || t.WritesFailed < 0 || t.NewConnections < 0 || t.PeakTimeWait < 0 {
			return fmt.Errorf("validate result %s: target %s has a negative count", doc.ID, t.Name)
		}
		for k, v := range t.Errors {
			if v < 0 {
				return fmt.Errorf("validate result %s: target %s: negative count of error %s", doc.ID, t.Name, k)
			}
		}
		if t.Histograms != nil {
			for _, h := range []struct{ name, enc string }{{"latency", t.Histograms.Latency}, {"service_time", t.Histograms.ServiceTime}} {
				if h.enc == "" {
					continue
				}
				if _, err := DecodeHistogram(h.enc); err != nil {
					return fmt.Errorf("validate result %s: target %s: %s histogram: %w", doc.ID, t.Name, h.name, err)
				}
			}
		}
	}
	return nil
}

func bad(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) || f < 0 }

// ValidateMatrix checks a matrix summary: profiles named and cells that
// belong to them.
func ValidateMatrix(m *Matrix) error {
	if m.ID == "" {
		return fmt.Errorf("validate matrix: %w: missing id", ErrNotResult)
	}
	if len(m.Clients) == 0 || len(m.Sysctls) == 0 {
		return fmt.Errorf("validate matrix %s: no client or no sysctl profiles", m.ID)
	}
	if len(m.Cells) > len(m.Clients)*len(m.Sysctls) {
		return fmt.Errorf("validate matrix %s: %d cells for %d x %d profiles", m.ID, len(m.Cells), len(m.Clients), len(m.Sysctls))
	}
	return nil
}

// Expand turns command-line arguments (files, directories, glob patterns)
// into result file paths: a directory stands for the *.json files in it
// (not recursively), a pattern for its matches. Order is kept, duplicates
// dropped; an argument that matches nothing is an error.
func Expand(args []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, a := range args {
		var matches []string
		if strings.ContainsAny(a, "*?[") {
			m, err := filepath.Glob(a)
			if err != nil {
				return nil, fmt.Errorf("expand %q: %w", a, err)
			}
			for _, p := range m {
				// like a shell: a pattern does not match hidden files
				// (loadcap's temporary files start with a dot)
				if !strings.HasPrefix(filepath.Base(p), ".") {
					matches = append(matches, p)
				}
			}
		} else {
			matches = []string{a}
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("expand %q: no result files match", a)
		}
		for _, m := range matches {
			st, err := os.Stat(m)
			if err != nil {
				return nil, fmt.Errorf("expand %q: %w", a, err)
			}
			if !st.IsDir() {
				add(m)
				continue
			}
			files, err := jsonFiles(m)
			if err != nil {
				return nil, fmt.Errorf("expand %q: %w", a, err)
			}
			if len(files) == 0 && len(matches) == 1 {
				return nil, fmt.Errorf("expand %q: no *.json result files in directory", a)
			}
			for _, f := range files {
				add(f)
			}
		}
	}
	return out, nil
}

// jsonFiles lists the visible *.json files of dir, sorted by name (result
// ids start with their UTC start time, so this is chronological).
func jsonFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".json") {
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	sort.Strings(out)
	return out, nil
}

// LoadAll expands args (see Expand) and loads every file. The first bad
// file stops it with an error naming that file.
func LoadAll(args []string) ([]*File, error) {
	paths, err := Expand(args)
	if err != nil {
		return nil, err
	}
	out := make([]*File, 0, len(paths))
	for _, p := range paths {
		f, err := LoadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// Docs returns the run documents of files, skipping matrix summaries.
func Docs(files []*File) []*Document {
	var out []*Document
	for _, f := range files {
		if f.Doc != nil {
			out = append(out, f.Doc)
		}
	}
	return out
}

// Entry is one line of a result listing: a loaded file or the error that
// kept it from loading.
type Entry struct {
	File
	Err error
}

// List loads the result files args name (files, directories of *.json,
// glob patterns: see Expand). Files that fail to load are listed with their
// error rather than stopping the listing.
func List(args ...string) ([]Entry, error) {
	paths, err := Expand(args)
	if err != nil {
		return nil, fmt.Errorf("list results: %w", err)
	}
	out := make([]Entry, 0, len(paths))
	for _, p := range paths {
		f, err := LoadFile(p)
		if err != nil {
			out = append(out, Entry{File: File{Path: p}, Err: err})
			continue
		}
		out = append(out, Entry{File: *f})
	}
	return out, nil
}

// ListReporter writes one line per entry: id, start time, targets, client,
// sysctl, achieved rate, errors, predicted and measured exhaustion rate.
func ListReporter(entries []Entry) Reporter {
	return func(w io.Writer) error {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTARTED (UTC)\tTARGETS\tCLIENT\tSYSCTL\tACHIEVED/S\tERRORS\tPREDICTED LIMIT\tMEASURED LIMIT")
		for _, e := range entries {
			switch {
			case e.Err != nil:
				fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\tunreadable: %v\n", filepath.Base(e.Path), e.Err)
			case e.Matrix != nil:
				m := e.Matrix
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t-\t-\tmatrix of %d cells\t-\n", m.ID, m.StartedAt.UTC().Format("2006-01-02 15:04:05"),
					m.Targets, strings.Join(m.Clients, ","), strings.Join(m.Sysctls, ","), len(m.Cells))
			default:
				d := e.Doc
				id := d.ID
				if d.Interrupted {
					id += " (interrupted)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, d.StartedAt.UTC().Format("2006-01-02 15:04:05"),
					targetNames(d), d.Config.ClientProfile, d.Config.SysctlProfile, fmtRate(d.AchievedRate),
					fmtInt(totalFailed(d)), limitText(d.Capacity.PredictedExhaustionRate, d.Capacity.Limit),
					measuredText(d))
			}
		}
		return tw.Flush()
	}
}

// Reporter writes a report (a comparison table, a listing, an HTML page)
// to w, in the style of vegeta's lib/reporters.go.
type Reporter func(io.Writer) error

// Report is a convenience method calling rep.
func (rep Reporter) Report(w io.Writer) error { return rep(w) }
