package sampler

import (
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testns"
)

// needRoot skips tests that create network namespaces when not root.
func needRoot(tb testing.TB) { tb.Helper(); testns.NeedRoot(tb) }

// newTestNetNS creates a network namespace with lo up, deleted when the test
// ends (testns.New).
func newTestNetNS(tb testing.TB) string { tb.Helper(); return testns.New(tb) }

// withNetNS runs fn on a thread inside the namespace.
func withNetNS(tb testing.TB, ns string, fn func() error) { tb.Helper(); testns.Do(tb, ns, fn) }

// setSysctls writes sysctls (dotted keys) inside the namespace.
func setSysctls(tb testing.TB, ns string, kv map[string]string) {
	tb.Helper()
	testns.SetSysctls(tb, ns, kv)
}

// makeSockets is testns.MakeSockets.
func makeSockets(tb testing.TB, ns string, ports []uint16, timeWait, established int, deadline time.Duration) *testns.Sockets {
	tb.Helper()
	return testns.MakeSockets(tb, ns, ports, timeWait, established, deadline)
}

// ssStates counts `ss -tan` lines per state inside ns, with an optional ss
// filter expression.
func ssStates(tb testing.TB, ns string, filter ...string) StateCounts {
	tb.Helper()
	var c StateCounts
	for name, n := range testns.SSStates(tb, ns, filter...) {
		st, ok := ParseState(name)
		if !ok {
			tb.Fatalf("ss: unknown state %q", name)
		}
		c[st] += n
	}
	return c
}
