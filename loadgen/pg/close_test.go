package pg_test

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/loadgen/pgsink"
)

// closing returns how many sockets to or from port are neither listening
// nor in TIME_WAIT: connections still open or still closing.
func closing(t *testing.T, port string) int {
	t.Helper()
	out, err := exec.Command("ss", "-Htan", "exclude", "time-wait", "exclude", "listening",
		"( dport = :"+port+" or sport = :"+port+" )").Output()
	if err != nil {
		ssMissing(t, err)
		return 0
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}

// ssMissing skips (or, with LOADCAP_REQUIRE_SERVERS=1, fails) a test that
// needs ss to count sockets.
func ssMissing(t *testing.T, err error) {
	t.Helper()
	skipOrFail(t, "ss unavailable (install iproute2): %v", err)
}

// timeWait returns the local:remote pairs in TIME_WAIT whose destination
// (dir "dport") or source (dir "sport") port is port, as ss reports them.
func timeWait(t *testing.T, dir, port string) map[string]bool {
	t.Helper()
	out, err := exec.Command("ss", "-Htan", "state", "time-wait", fmt.Sprintf("( %s = :%s )", dir, port)).Output()
	if err != nil {
		ssMissing(t, err)
	}
	m := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) >= 4 {
			m[f[2]+" "+f[3]] = true
		}
	}
	return m
}

func newSince(before, after map[string]bool) int {
	n := 0
	for k := range after {
		if !before[k] {
			n++
		}
	}
	return n
}

// settledTimeWait waits (bounded) until every connection to or from port
// has finished closing, then returns the TIME_WAIT sockets new since
// cli0/srv0 on the client side (destination port) and the server side
// (source port). Only for a port of the test's own (a new sink): a
// before/after difference undercounts when a new connection takes the
// 4-tuple of an earlier TIME_WAIT, which tcp_tw_reuse=2 allows on loopback.
func settledTimeWait(t *testing.T, port string, cli0, srv0 map[string]bool) (cli, srv int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for closing(t, port) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := closing(t, port); n > 0 {
		t.Fatalf("%d connections to port %s still open or closing 5 s after the run", n, port)
	}
	return newSince(cli0, timeWait(t, "dport", port)), newSince(srv0, timeWait(t, "sport", port))
}

// A connection per write closed by the client, against the embedded sink:
// plain close-client leaves every TIME_WAIT on the client (one per write,
// and one for the start-up check, which closes the same way), none on the
// sink; close-client-linger0 closes with Terminate then RST and leaves no
// TIME_WAIT on either side.
func TestCloseClientTimeWaitSink(t *testing.T) {
	for _, c := range []struct {
		profile      string
		perWriteOnCl bool
	}{
		{"close-client", true},
		{"close-client-linger0", false},
	} {
		t.Run(c.profile, func(t *testing.T) {
			s := testservers.PGSink(t, pgsink.Options{})
			_, port, _ := net.SplitHostPort(s.Addr().String())
			cli0, srv0 := timeWait(t, "dport", port), timeWait(t, "sport", port)
			_, tr := drive(t, withQuery(s.URL(), "table=tw"), c.profile, 100, time.Second, 5)
			if tr.Failed != 0 || tr.OK != 100 || tr.NewConnections != tr.OK {
				t.Fatalf("ok=%d failed=%d new connections %d %v %v", tr.OK, tr.Failed, tr.NewConnections, tr.Errors, tr.FirstErrors)
			}
			if got := s.TableRows("tw"); got != tr.Lines {
				t.Fatalf("sink rows %d, lines_ok %d", got, tr.Lines)
			}
			cli, srv := settledTimeWait(t, port, cli0, srv0)
			t.Logf("%s: %d writes, TIME_WAIT: %d on the client, %d on the sink", c.profile, tr.OK, cli, srv)
			want := 0
			if c.perWriteOnCl {
				want = int(tr.OK) + 1 // + the start-up check
			}
			if cli != want || srv != 0 {
				t.Fatalf("%s: TIME_WAIT %d on the client, %d on the sink; want %d and 0", c.profile, cli, srv, want)
			}
			if st := s.Stats(); st.Active != 0 || st.Connections != tr.OK+1 {
				t.Fatalf("sink %s: want %d sessions, all ended", st, tr.OK+1)
			}
		})
	}
}
