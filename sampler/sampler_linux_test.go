package sampler

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestSnapshotMatchesSS(t *testing.T) {
	ns := newTestNetNS(t)
	setSysctls(t, ns, map[string]string{"net.ipv4.tcp_tw_reuse": "0"})
	const tw, est = 57, 23
	ports := []uint16{8086, 8087}
	makeSockets(t, ns, ports, tw, est, 10*time.Second)

	want := ssStates(t, ns)
	if want[TimeWait] != tw || want[Established] != 2*est || want[Listen] != len(ports) {
		t.Fatalf("ss sees %v, want %d TIME_WAIT, %d ESTABLISHED, %d LISTEN", want.Map(), tw, 2*est, len(ports))
	}
	wantDst := ssStates(t, ns, "dport", "=", ":8086")

	for _, variant := range []string{SourceNetlink, "netlink-v2", SourceProc} {
		t.Run(variant, func(t *testing.T) {
			source := strings.TrimSuffix(variant, "-v2")
			s, err := Open(Options{NetNS: ns, Source: source})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Source() != source {
				t.Fatalf("source %q, want %q", s.Source(), source)
			}
			switch variant {
			case SourceNetlink:
				if !s.compat {
					t.Log("kernel lacks TCPDIAG_GETSOCK: one SOCK_DIAG_BY_FAMILY dump per family")
				}
			case "netlink-v2":
				s.compat = false
			}
			dst := netip.MustParseAddrPort("127.0.0.1:8086")
			snap, err := s.Snapshot(Query{Matches: []Match{{Name: "a", Dst: dst}}})
			if err != nil {
				t.Fatal(err)
			}
			if snap.All != want {
				t.Errorf("all: got %v, ss says %v", snap.All.Map(), want.Map())
			}
			if snap.Matched != wantDst {
				t.Errorf("matched: got %v, ss dport = :8086 says %v", snap.Matched.Map(), wantDst.Map())
			}
			if got := *snap.ByMatch["a"]; got != wantDst {
				t.Errorf("by match: got %v, want %v", got.Map(), wantDst.Map())
			}
			if got := snap.ByDestination[dst]; got == nil || *got != wantDst {
				t.Errorf("by destination %v: got %v, want %v", dst, got, wantDst.Map())
			}
			// Each matched socket holds its own local port: TIME_WAIT and
			// client-side ESTABLISHED toward 8086.
			wantPorts := wantDst[TimeWait] + wantDst[Established]
			if snap.PortsInUse != wantPorts || snap.PortsInUseByDestination[dst] != wantPorts {
				t.Errorf("ports in use %d (by destination %d), want %d", snap.PortsInUse, snap.PortsInUseByDestination[dst], wantPorts)
			}
			if snap.PortRange != (PortRange{32768, 60999}) {
				t.Errorf("port range %v", snap.PortRange)
			}
			// TIME_WAIT sockets are seconds old: all expire in 50-60 s.
			if n := snap.TimeWait.Count(); n != wantDst[TimeWait] {
				t.Errorf("time-wait histogram holds %d, want %d", n, wantDst[TimeWait])
			}
			if young := snap.TimeWait[10] + snap.TimeWait[11]; young != wantDst[TimeWait] {
				t.Errorf("time-wait histogram %v: want all in 50-60 s", snap.TimeWait)
			}

			c, err := s.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if c.TimeWait != int64(tw) || c.ActiveOpens != uint64(tw+est) || c.CurrEstab != uint64(2*est) {
				t.Errorf("counters %+v: want sockstat tw %d, ActiveOpens %d, CurrEstab %d", c, tw, tw+est, 2*est)
			}
			sys, err := s.Sysctls()
			if err != nil {
				t.Fatal(err)
			}
			if sys["net.ipv4.tcp_tw_reuse"] != "0" || sys["net.ipv4.ip_local_port_range"] != "32768 60999" {
				t.Errorf("sysctls %v", sys)
			}
		})
	}
}
