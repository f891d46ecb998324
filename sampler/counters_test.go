package sampler

import (
	"os"
	"strings"
	"testing"
)

func readFixture(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestCountersFixtures(t *testing.T) {
	ss, err := ParseSockstat(readFixture(t, "proc_net_sockstat"))
	if err != nil {
		t.Fatal(err)
	}
	snmp, err := ParseProtoStats(readFixture(t, "proc_net_snmp"))
	if err != nil {
		t.Fatal(err)
	}
	netstat, err := ParseProtoStats(readFixture(t, "proc_net_netstat"))
	if err != nil {
		t.Fatal(err)
	}
	if snmp["Tcp"]["MaxConn"] != -1 {
		t.Errorf("MaxConn %d, want -1", snmp["Tcp"]["MaxConn"])
	}
	got := CountersFrom(ss, snmp, netstat)
	want := Counters{InUse: 6, TimeWait: 5, Alloc: 11, ActiveOpens: 9, PassiveOpens: 9, CurrEstab: 8, TW: 5}
	if got != want {
		t.Errorf("counters\n got %+v\nwant %+v", got, want)
	}
	m := got.Map()
	if m["sockstat.tw"] != 5 || m["Tcp.ActiveOpens"] != 9 || m["TcpExt.TWKilled"] != 0 || len(m) != 15 {
		t.Errorf("map %v", m)
	}
}

func TestParseProtoStatsErrors(t *testing.T) {
	for name, in := range map[string]string{
		"no values":  "Tcp: A B\n",
		"mismatch":   "Tcp: A B\nUdp: 1 2\n",
		"count":      "Tcp: A B\nTcp: 1\n",
		"not number": "Tcp: A B\nTcp: 1 x\n",
	} {
		if _, err := ParseProtoStats(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	m, err := ParseProtoStats(strings.NewReader("TcpExt: Big\nTcpExt: 18446744073709551615\n"))
	if err != nil || uint64(m["TcpExt"]["Big"]) != 1<<64-1 {
		t.Errorf("unsigned 64-bit: %v %v", m, err)
	}
	if _, err := ParseSockstat(strings.NewReader("TCP: inuse\n")); err == nil {
		t.Error("sockstat odd fields: no error")
	}
	if _, err := ParseSockstat(strings.NewReader("TCP: inuse x\n")); err == nil {
		t.Error("sockstat not a number: no error")
	}
}
