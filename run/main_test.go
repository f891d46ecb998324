package run_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestMain builds the loadcap binary once: lab runs re-execute it inside
// their namespaces.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "loadcap-run-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exe := filepath.Join(dir, "loadcap")
	build := exec.Command("go", "build", "-o", exe, "github.com/loadcap/loadcap/cmd/loadcap")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build loadcap:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	os.Setenv("LOADCAP_TEST_EXE", exe)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
