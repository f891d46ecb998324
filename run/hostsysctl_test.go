package run_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/run"
)

// readSysctlTree reads every readable value under /proc/sys/<dir>, keyed
// by its path below /proc/sys.
func readSysctlTree(t *testing.T, dirs ...string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, dir := range dirs {
		root := filepath.Join("/proc/sys", dir)
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil // write-only (route/flush) or gone
			}
			m[strings.TrimPrefix(p, "/proc/sys/")] = strings.TrimSpace(string(b))
			return nil
		})
	}
	if len(m) < 50 {
		t.Skipf("only %d sysctls readable under /proc/sys: no procfs here", len(m))
	}
	return m
}

// perInterface reports whether key belongs to one network interface
// (conf/eth0/..., neigh/veth1/...): interfaces come and go with the other
// tests of a shared machine, so only their common keys are compared.
func perInterface(key string) bool {
	parts := strings.Split(key, "/")
	if len(parts) < 4 || (parts[2] != "conf" && parts[2] != "neigh") {
		return false
	}
	return parts[3] != "all" && parts[3] != "default"
}

// compareSysctls fails the test for every value that changed, and every
// key (not of one interface) that appeared or disappeared.
func compareSysctls(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	changed := 0
	for k, v := range before {
		a, ok := after[k]
		switch {
		case !ok && !perInterface(k):
			t.Errorf("%s: /proc/sys/%s disappeared (was %q)", what, k, v)
			changed++
		case ok && a != v:
			t.Errorf("%s: /proc/sys/%s changed from %q to %q", what, k, v, a)
			changed++
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok && !perInterface(k) {
			t.Errorf("%s: /proc/sys/%s appeared (%q)", what, k, v)
			changed++
		}
	}
	t.Logf("%s: %d host sysctls compared, %d changed", what, len(before), changed)
}

// The host is left alone: a normal run and a lab run with a sysctl
// profile that changes the keys that matter leave every
// /proc/sys/net/ipv4 and /proc/sys/net/core value of the host as it was.
func TestHostSysctlsUntouched(t *testing.T) {
	dirs := []string{"net/ipv4", "net/core"}
	t.Run("normal run", func(t *testing.T) {
		before := readSysctlTree(t, dirs...)
		cfg := baseConfig(t)
		cfg.Duration = time.Second
		if _, err := run.Execute(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		compareSysctls(t, "normal run", before, readSysctlTree(t, dirs...))
	})
	t.Run("lab run", func(t *testing.T) {
		needLab(t)
		profile := sysctlFile(t,
			"net.ipv4.tcp_tw_reuse = 1",
			"net.ipv4.tcp_fin_timeout = 17",
			"net.ipv4.ip_local_port_range = 20000 20999",
			"net.ipv4.tcp_keepalive_time = 77",
			"net.ipv4.ip_forward = 1",
			"net.core.somaxconn = 1234",
		)
		before := readSysctlTree(t, dirs...)
		for k, v := range map[string]string{"net/ipv4/tcp_fin_timeout": "17", "net/ipv4/tcp_keepalive_time": "77", "net/core/somaxconn": "1234"} {
			if before[k] == v {
				t.Skipf("the host already has %s = %s: the profile would not show a change", k, v)
			}
		}
		cfg := labConfig(t, "keepalive", profile, 200, time.Second)
		cfg.LabPorts = 0
		doc := execLab(t, cfg)
		// The profile was in force for the client, inside its namespace.
		if got := doc.Sysctl["net.ipv4.tcp_fin_timeout"]; got != "17" {
			t.Errorf("lab client saw tcp_fin_timeout %q, want the profile's 17", got)
		}
		compareSysctls(t, "lab run", before, readSysctlTree(t, dirs...))
	})
}
