package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/sampler"
)

// conntrackFlags are the flags of `loadcap sample --conntrack`.
func conntrackFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "conntrack", EnvVars: []string{"LOADCAP_SAMPLE_CONNTRACK"}, Usage: "watch this host's (or --netns's) connection tracking table instead of its sockets: entries per translated address, destination and state over ctnetlink, nf_conntrack_count and max, the conntrack -S counters and the new-flow rate at which the translator runs out (a Kubernetes node, a NAT host)"},
		&cli.StringFlag{Name: "nat-ports", Value: "1024-65535", EnvVars: []string{"LOADCAP_SAMPLE_NAT_PORTS"}, Usage: "with --conntrack: the translated port range, LO-HI, for the projection"},
	}
}

// conntrackReport is one interval of `loadcap sample --conntrack`.
type conntrackReport struct {
	Time       time.Time                  `json:"time"`
	Snapshot   *sampler.ConntrackSnapshot `json:"conntrack"`
	NewFlows   int                        `json:"new_flows"`
	Projection sampler.CTProjection       `json:"projection"`
	// StatsDelta is the change of the counters over the interval.
	StatsDelta sampler.ConntrackStats `json:"stats_delta"`
}

func runConntrackSample(c *cli.Context) error {
	for _, f := range []string{"port", "addr", "local-port", "source"} {
		if c.IsSet(f) {
			return badInput("--%s does not apply to --conntrack", f)
		}
	}
	lo, hi, err := parsePortRange(c.String("nat-ports"))
	if err != nil {
		return badInput("bad --nat-ports %q: %v", c.String("nat-ports"), err)
	}
	interval, count := c.Duration("interval"), c.Int("count")
	if interval <= 0 {
		return badInput("--interval %s: must be positive", interval)
	}
	if count < 0 {
		return badInput("--count %d: must be 0 or more", count)
	}
	ns := c.String("netns")
	if ns != "" {
		if _, err := os.Stat(sampler.NetNSPath(ns)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return badInput("--netns %q: no such network namespace (%s)", ns, sampler.NetNSPath(ns))
			}
			return badInput("--netns %q: %v", ns, err)
		}
	}
	ct, err := sampler.OpenConntrack(ns)
	if err != nil {
		return err
	}
	defer ct.Close()
	prev, err := ct.Snapshot()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	enc := json.NewEncoder(os.Stdout)
	t := time.NewTicker(interval)
	defer t.Stop()
	last := time.Now()
	for i := 0; count == 0 || i < count; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		snap, err := ct.Snapshot()
		if err != nil {
			return err
		}
		now := time.Now()
		rep := conntrackReport{Time: now, Snapshot: snap, NewFlows: snap.NewSince(prev), StatsDelta: statsDelta(snap.Stats, prev.Stats)}
		rep.Projection = sampler.ProjectConntrack(snap, float64(rep.NewFlows)/now.Sub(last).Seconds(), hi-lo+1)
		prev, last = snap, now
		if c.Bool("json") {
			if err := enc.Encode(jsonSafe(rep)); err != nil {
				return fmt.Errorf("write report: %w", err)
			}
			continue
		}
		fmt.Print(conntrackText(rep))
	}
	return nil
}

// jsonSafe replaces the projection's infinite rates (never) by -1.
func jsonSafe(r conntrackReport) conntrackReport {
	for _, p := range []*float64{&r.Projection.PortRate, &r.Projection.TableRate} {
		if math.IsInf(*p, 0) {
			*p = -1
		}
	}
	return r
}

func statsDelta(a, b sampler.ConntrackStats) sampler.ConntrackStats {
	return sampler.ConntrackStats{
		Found: a.Found - b.Found, Invalid: a.Invalid - b.Invalid, Insert: a.Insert - b.Insert,
		InsertFailed: a.InsertFailed - b.InsertFailed, Drop: a.Drop - b.Drop, EarlyDrop: a.EarlyDrop - b.EarlyDrop,
		Error: a.Error - b.Error, SearchRestart: a.SearchRestart - b.SearchRestart,
		ClashResolve: a.ClashResolve - b.ClashResolve, ChainTooLong: a.ChainTooLong - b.ChainTooLong,
	}
}

func conntrackText(r conntrackReport) string {
	var b strings.Builder
	s := r.Snapshot
	d := r.StatsDelta
	fmt.Fprintf(&b, "%s conntrack %d/%d entries, %d new; insert_failed +%d drop +%d early_drop +%d clash_resolve +%d\n",
		r.Time.Format("15:04:05"), s.Count, s.Max, r.NewFlows, d.InsertFailed, d.Drop, d.EarlyDrop, d.ClashResolve)
	for i, g := range s.Groups {
		if i == 10 {
			fmt.Fprintf(&b, "  ... %d more destinations\n", len(s.Groups)-10)
			break
		}
		var st []string
		for k, v := range g.States {
			st = append(st, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(st)
		fmt.Fprintf(&b, "  proto %d %s via %s: %d entries, %d holding a port (%s)\n", g.Proto, g.Dst, g.Translated, g.Total, g.Held, strings.Join(st, " "))
	}
	fmt.Fprintf(&b, "  %s\n", r.Projection.Text)
	return b.String()
}
