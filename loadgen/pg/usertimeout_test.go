package pg_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/lab"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/pg"
	"github.com/loadcap/loadcap/loadgen/pgsink"
	"github.com/loadcap/loadcap/profiles"
)

// envNetnsChild marks the copy of the test binary that
// TestUserTimeoutIsETIMEDOUT runs in its own network namespace.
const envNetnsChild = "LOADCAP_PG_TEST_NETNS_CHILD"

// A pooled connection whose peer vanishes (a firewall drops the flow
// silently) is aborted by the kernel when the profile's TCP_USER_TIMEOUT
// expires, and the write on it fails with ETIMEDOUT: the class the HTTP
// path reports, not the "unexpected EOF" pgconn made of it when it took
// the kernel's ETIMEDOUT for a deadline and read the dead socket again.
// In every mode (copy reads through pgconn's background receive).
//
// The test re-runs itself in a new network namespace (root only) holding
// the embedded sink and the driver, both on its loopback: the first write
// opens the pooled connection, an nftables rule then drops every packet of
// the sink's port, and the second write reuses the connection. The
// namespace, and its rules, go away with the child process.
func TestUserTimeoutIsETIMEDOUT(t *testing.T) {
	if os.Getenv(envNetnsChild) == "1" {
		userTimeoutChild(t)
		return
	}
	if !lab.Privileged() {
		skipOrFail(t, "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) for a network namespace")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "%s not installed: %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestUserTimeoutIsETIMEDOUT$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envNetnsChild+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	t.Logf("in its own network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test in its own network namespace failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestUserTimeoutIsETIMEDOUT") {
		t.Fatalf("the test in its own network namespace did not pass")
	}
}

// userTimeoutChild is TestUserTimeoutIsETIMEDOUT in its namespace.
func userTimeoutChild(t *testing.T) {
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	p := client(t, "pool-no-keepalive")
	p.UserTimeout = profiles.Duration(time.Second)
	for _, mode := range []string{pg.ModeInsert, pg.ModeValues, pg.ModeCopy} {
		t.Run(mode, func(t *testing.T) {
			s := testservers.PGSink(t, pgsink.Options{})
			spec, err := loadgen.ParseTarget(withQuery(s.URL(), "table=ut&mode="+mode))
			if err != nil {
				t.Fatal(err)
			}
			d, err := pg.NewDriver(context.Background(), spec, p, gen(t), pg.Options{Batch: 5, Timeout: 10 * time.Second, Create: true})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			sess := d.NewSession()
			if r := sess.Write(context.Background(), 0, time.Now()); r.Class != "" {
				t.Fatalf("write before the drop: %s: %v", r.Class, r.Err)
			}
			_, port, _ := strings.Cut(s.Addr().String(), "127.0.0.1:")
			if _, err := strconv.Atoi(port); err != nil {
				t.Fatalf("sink address %s: no port", s.Addr())
			}
			blackhole(t, port)
			r := sess.Write(context.Background(), 1, time.Now())
			t.Logf("write after the drop: class %q: %v", r.Class, r.Err)
			if r.Class != loadgen.ClassETIMEDOUT {
				t.Errorf("write on the dropped connection: class %q (%v), want %q", r.Class, r.Err, loadgen.ClassETIMEDOUT)
			}
			if onReuse, _ := d.DeadConnections(); onReuse != 1 {
				t.Errorf("dead connections found on reuse %d, want 1", onReuse)
			}
		})
	}
}

// blackhole drops every packet to or from port in the namespace until the
// test ends: a firewall that forgot the flow.
func blackhole(t *testing.T, port string) {
	t.Helper()
	table := "loadcap_blackhole_" + port
	rules := fmt.Sprintf(`table inet %s {
	chain in {
		type filter hook input priority 0; policy accept;
		tcp dport %s drop
		tcp sport %s drop
	}
}
`, table, port, port)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "inet", table).Run() })
}
