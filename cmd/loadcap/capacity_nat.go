package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/capacity"
)

// natFlags are the `loadcap capacity` flags of the translator in front of
// the clients (see docs/nat.md).
func natFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "nat-ports", EnvVars: []string{"LOADCAP_NAT_PORTS"}, Usage: "the clients are behind a translator (SNAT/masquerade) with this translated port range, LO-HI (for example 1024-65535); adds the NAT stage"},
		&cli.IntFlag{Name: "nat-addrs", Value: 1, EnvVars: []string{"LOADCAP_NAT_ADDRS"}, Usage: "translated addresses of the translator"},
		&cli.StringFlag{Name: "conntrack-tw", Value: "120", EnvVars: []string{"LOADCAP_CONNTRACK_TW"}, Usage: "the translator's nf_conntrack_tcp_timeout_time_wait, seconds or a duration"},
		&cli.IntFlag{Name: "conntrack-max", Value: 262144, EnvVars: []string{"LOADCAP_CONNTRACK_MAX"}, Usage: "the translator's nf_conntrack_max (0: unbounded)"},
		&cli.IntFlag{Name: "clients", Value: 1, EnvVars: []string{"LOADCAP_NAT_CLIENTS"}, Usage: "clients behind the translator, each writing at the same rate"},
		&cli.BoolFlag{Name: "nat-no-evict", EnvVars: []string{"LOADCAP_NAT_NO_EVICT"}, Usage: "model a kernel that does not evict conntrack TIME_WAIT entries when translated ports run out (closed flows hold their port for --conntrack-tw)"},
	}
}

// natFromFlags returns the translator the flags describe, nil without
// --nat-ports.
func natFromFlags(c *cli.Context) (*capacity.NAT, error) {
	v := c.String("nat-ports")
	if v == "" {
		for _, f := range []string{"nat-addrs", "conntrack-tw", "conntrack-max", "clients", "nat-no-evict"} {
			if c.IsSet(f) {
				return nil, badInput("--%s needs --nat-ports", f)
			}
		}
		return nil, nil
	}
	lo, hi, err := parsePortRange(v)
	if err != nil {
		return nil, badInput("bad --nat-ports %q: %v", v, err)
	}
	tw, err := parseSeconds(c.String("conntrack-tw"))
	if err != nil {
		return nil, badInput("bad --conntrack-tw %q: %v", c.String("conntrack-tw"), err)
	}
	n := &capacity.NAT{PortLow: lo, PortHigh: hi, Addrs: c.Int("nat-addrs"), ConntrackTimeWait: tw,
		ConntrackMax: c.Int("conntrack-max"), Clients: c.Int("clients"), NoEvict: c.Bool("nat-no-evict")}
	switch {
	case n.Addrs < 1:
		return nil, badInput("bad --nat-addrs %d: want 1 or more", n.Addrs)
	case n.Clients < 1:
		return nil, badInput("bad --clients %d: want 1 or more", n.Clients)
	case n.ConntrackMax < 0:
		return nil, badInput("bad --conntrack-max %d: want 0 (unbounded) or more", n.ConntrackMax)
	}
	return n, nil
}

// parsePortRange parses "LO-HI" (1 <= LO <= HI <= 65535).
func parsePortRange(v string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(v), "-")
	if !ok {
		return 0, 0, fmt.Errorf("want LO-HI")
	}
	if lo, err = strconv.Atoi(strings.TrimSpace(a)); err == nil {
		hi, err = strconv.Atoi(strings.TrimSpace(b))
	}
	if err != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("want LO-HI with 1 <= LO <= HI <= 65535")
	}
	return lo, hi, nil
}

// parseSeconds parses whole or fractional seconds ("120") or a duration
// ("2m"), positive.
func parseSeconds(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		s, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil {
			return 0, fmt.Errorf("want seconds or a duration")
		}
		d = time.Duration(s * float64(time.Second))
	}
	if d <= 0 {
		return 0, fmt.Errorf("must be positive")
	}
	return d, nil
}
