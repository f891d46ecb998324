package run_test

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/loadcap/loadcap/lab"
)

// `loadcap sample --conntrack --netns ROUTER --json` reports a NAT
// router's open flows per destination and translated address, holding
// their ports, and projects them.
func TestCLISampleConntrack(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Create(ctx, lab.Options{Ports: 500, NAT: &lab.NATOptions{Ports: 50}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	dst := netip.AddrPortFrom(l.ServerAddrs[0], 8086)
	var ln net.Listener
	if err := lab.Do(l.NSPath(l.ServerNS), func() error { ln, err = net.Listen("tcp4", dst.String()); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	err = lab.Do(l.NSPath(l.ClientNS), func() error {
		for range 5 {
			c, err := net.DialTimeout("tcp4", dst.String(), 5*time.Second)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, nil, "sample", "--conntrack", "--netns", l.RouterNS, "--nat-ports", "50000-50049", "--count", "1", "--interval", "100ms", "--json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var rep struct {
		Conntrack struct {
			Groups []struct {
				Translated string         `json:"translated"`
				Dst        string         `json:"dst"`
				States     map[string]int `json:"states"`
				Held       int            `json:"held"`
			} `json:"groups"`
			Count int `json:"nf_conntrack_count"`
			Max   int `json:"nf_conntrack_max"`
		} `json:"conntrack"`
		Projection struct {
			Ports       int    `json:"translated_ports"`
			BusiestHeld int    `json:"busiest_held"`
			Text        string `json:"text"`
		} `json:"projection"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	var g0 *struct {
		Translated string         `json:"translated"`
		Dst        string         `json:"dst"`
		States     map[string]int `json:"states"`
		Held       int            `json:"held"`
	}
	for i := range rep.Conntrack.Groups {
		if rep.Conntrack.Groups[i].Dst == dst.String() {
			g0 = &rep.Conntrack.Groups[i]
		}
	}
	if g0 == nil || g0.Translated != "198.18.1.254" || g0.States["ESTABLISHED"] != 5 || g0.Held != 5 ||
		rep.Projection.Ports != 50 || rep.Projection.BusiestHeld != 5 || rep.Conntrack.Max <= 0 || rep.Conntrack.Count < 5 {
		t.Errorf("report %s", stdout)
	}
}
