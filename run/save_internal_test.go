package run

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loadcap/loadcap/results"
)

// A result that cannot be saved where asked (the disk filled up during the
// run, say) is saved in the temporary directory instead, and the error says
// where.
func TestSaveFallsBackToTempDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := &Outcome{Doc: &results.Document{ID: "20261121T000000Z-fallbk", Schema: results.SchemaVersion}}
	err := save(filepath.Join(file, "results"), out)
	if err == nil || !strings.Contains(err.Error(), "saved to "+out.Path+" instead") {
		t.Fatalf("error %v, path %q", err, out.Path)
	}
	defer os.Remove(out.Path)
	if filepath.Dir(out.Path) != filepath.Clean(os.TempDir()) {
		t.Fatalf("saved to %s, want the temporary directory", out.Path)
	}
	if d, err := results.Load(out.Path); err != nil || d.ID != out.Doc.ID {
		t.Fatalf("saved document: %v %v", d, err)
	}
}
