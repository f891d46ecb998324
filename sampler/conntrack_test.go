package sampler

import (
	"math"
	"net/netip"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// Synthetic ctnetlink messages parse back to what was encoded, grouping
// counts per (translated address, destination) and state, and the
// projection scales the busiest group's held ports by Little's law.
func TestConntrackParseGroupProject(t *testing.T) {
	ap := netip.MustParseAddrPort
	mk := func(id uint32, sport uint16, tport uint16, state string, dst string) ConntrackEntry {
		st, ok := CTStateNum(state)
		if !ok {
			t.Fatalf("unknown state %s", state)
		}
		d := ap(dst)
		return ConntrackEntry{
			ID:       id,
			Orig:     CTTuple{Proto: unix.IPPROTO_TCP, Src: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.5"), sport), Dst: d},
			Reply:    CTTuple{Proto: unix.IPPROTO_TCP, Src: d, Dst: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), tport)},
			TCPState: st, TimeoutS: 117,
		}
	}
	entries := []ConntrackEntry{
		mk(1, 40001, 50001, "ESTABLISHED", "198.51.100.7:8086"),
		mk(2, 40002, 50002, "TIME_WAIT", "198.51.100.7:8086"),
		mk(3, 40003, 50003, "TIME_WAIT", "198.51.100.7:8086"),
		mk(4, 40004, 50004, "CLOSE_WAIT", "198.51.100.7:8086"),
		mk(5, 40005, 50005, "CLOSE", "198.51.100.8:5432"),
	}
	v6 := mk(6, 1, 2, "SYN_SENT", "198.51.100.8:5432")
	v6.Orig.Src, v6.Orig.Dst = ap("[2001:db8::1]:40006"), ap("[2001:db8::2]:5432")
	v6.Reply.Src, v6.Reply.Dst = v6.Orig.Dst, ap("[2001:db8::9]:50006")
	entries = append(entries, v6)
	st := mk(7, 40007, 50007, "ESTABLISHED", "198.51.100.7:8086") // with status bits (CTA_STATUS)
	st.Status = CTStatusAssured | CTStatusSeenReply | CTStatusConfirmed
	for _, e := range append(entries[:len(entries):len(entries)], st) {
		b, err := MarshalConntrackMsg(&e)
		if err != nil {
			t.Fatal(err)
		}
		var got ConntrackEntry
		if err := ParseConntrackMsg(b, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("round trip: got %+v, want %+v", got, e)
		}
	}
	if err := ParseConntrackMsg([]byte{2, 0}, &ConntrackEntry{}); err == nil {
		t.Error("a 2-byte message parsed")
	}

	var sum ConntrackStats
	for cpu, s := range []ConntrackStats{{InsertFailed: 3, Drop: 3, ClashResolve: 1}, {InsertFailed: 2, Drop: 4, EarlyDrop: 7, Found: 9}} {
		b, err := MarshalConntrackStatsCPU(uint16(cpu), s)
		if err != nil {
			t.Fatal(err)
		}
		if err := AddConntrackStatsCPU(b, &sum); err != nil {
			t.Fatal(err)
		}
	}
	if want := (ConntrackStats{InsertFailed: 5, Drop: 7, ClashResolve: 1, EarlyDrop: 7, Found: 9}); sum != want {
		t.Errorf("stats summed %+v, want %+v", sum, want)
	}

	groups := GroupConntrack(entries)
	first := groups[0]
	if first.Dst != ap("198.51.100.7:8086") || first.Translated != netip.MustParseAddr("192.0.2.1") || first.Total != 4 || first.Held != 2 ||
		!reflect.DeepEqual(first.States, map[string]int{"ESTABLISHED": 1, "TIME_WAIT": 2, "CLOSE_WAIT": 1}) {
		t.Errorf("busiest group %+v", first)
	}
	if len(groups) != 3 {
		t.Errorf("%d groups, want 3 (v4 8086, v4 5432, v6 5432)", len(groups))
	}
	snap := &ConntrackSnapshot{Groups: groups, Count: 6, Max: 600}
	p := ProjectConntrack(snap, 10, 200)
	// 2 held of 200 at 10 flows/s: ports run out at 1000 flows/s; the
	// table (6 of 600) at 1000 flows/s too: ports first (<=).
	if p.BusiestHeld != 2 || math.Abs(p.PortRate-1000) > 1e-9 || math.Abs(p.TableRate-1000) > 1e-9 {
		t.Errorf("projection %+v", p)
	}
	if p := ProjectConntrack(&ConntrackSnapshot{}, 0, 200); !math.IsInf(p.PortRate, 1) || !math.IsInf(p.TableRate, 1) {
		t.Errorf("empty projection %+v", p)
	}
}
