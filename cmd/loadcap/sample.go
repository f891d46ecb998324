package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/exporter"
	"github.com/loadcap/loadcap/sampler"
)

// sampleCommand is `loadcap sample`: watch the socket states toward a port
// on a live system, sending no traffic of its own.
func sampleCommand() *cli.Command {
	return &cli.Command{
		Name:  "sample",
		Usage: "watch socket states, connection rate and port use toward a port or address",
		Description: "Counts the TCP sockets toward --port (the client's view) or on --local-port (a server's view)\n" +
			"per state every --interval, with new connections/s, TIME_WAIT ages, ports in use out of the\n" +
			"local port range, and the open rate at which the range runs out on this kernel.",
		Flags: append([]cli.Flag{
			&cli.IntFlag{Name: "port", EnvVars: []string{"LOADCAP_SAMPLE_PORT"}, Usage: "destination port to watch (client view)"},
			&cli.StringFlag{Name: "addr", EnvVars: []string{"LOADCAP_SAMPLE_ADDR"}, Usage: "destination address to watch (default: any)"},
			&cli.IntFlag{Name: "local-port", EnvVars: []string{"LOADCAP_SAMPLE_LOCAL_PORT"}, Usage: "local port to watch (server view)"},
			&cli.DurationFlag{Name: "interval", Value: time.Second, EnvVars: []string{"LOADCAP_SAMPLE_INTERVAL"}, Usage: "time between reports"},
			&cli.IntFlag{Name: "count", EnvVars: []string{"LOADCAP_SAMPLE_COUNT"}, Usage: "stop after this many reports (0: until interrupted)"},
			&cli.BoolFlag{Name: "json", EnvVars: []string{"LOADCAP_SAMPLE_JSON"}, Usage: "print one JSON object per interval"},
			&cli.StringFlag{Name: "netns", EnvVars: []string{"LOADCAP_SAMPLE_NETNS"}, Usage: "network namespace name (ip netns) or path to sample in"},
			&cli.StringFlag{Name: "source", EnvVars: []string{"LOADCAP_SAMPLE_SOURCE"}, Usage: "force the socket source: netlink or proc (default: netlink, else proc)"},
			&cli.StringFlag{Name: "listen", EnvVars: []string{"LOADCAP_SAMPLE_LISTEN"}, Usage: "serve Prometheus metrics at http://ADDR/metrics instead of printing reports (--port/--addr/--local-port optional: all destinations)"},
			&cli.IntFlag{Name: "top", Value: exporter.DefaultTop, EnvVars: []string{"LOADCAP_SAMPLE_TOP"}, Usage: "with --listen: destinations with their own series, by ports in use; the rest are summed as destination=\"other\""},
		}, conntrackFlags()...),
		Action: runSample,
	}
}

func runSample(c *cli.Context) error {
	if c.Bool("conntrack") {
		return runConntrackSample(c)
	}
	if c.String("listen") != "" {
		return runExporter(c)
	}
	cfg, err := sampleConfig(c)
	if err != nil {
		return err
	}
	if cfg.Port == 0 && cfg.LocalPort == 0 {
		return badInput("--port or --local-port is required")
	}
	interval, count := c.Duration("interval"), c.Int("count")
	if interval <= 0 {
		return badInput("--interval %s: must be positive", interval)
	}
	if count < 0 {
		return badInput("--count %d: must be 0 or more", count)
	}
	w, err := sampler.NewWatcher(cfg)
	if err != nil {
		return err
	}
	defer w.Close()

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	enc := json.NewEncoder(os.Stdout)
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; count == 0 || i < count; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rep, err := w.Next()
		if err != nil {
			return err
		}
		if c.Bool("json") {
			if err := enc.Encode(rep); err != nil {
				return fmt.Errorf("write report: %w", err)
			}
		} else {
			fmt.Print(rep.Text())
		}
	}
	return nil
}

// sampleConfig checks the flags and turns them into a sampler.WatchConfig.
func sampleConfig(c *cli.Context) (sampler.WatchConfig, error) {
	var cfg sampler.WatchConfig
	port, lport := c.Int("port"), c.Int("local-port")
	if port < 0 || port > 65535 {
		return cfg, badInput("--port %d: not a port (1-65535)", port)
	}
	if lport < 0 || lport > 65535 {
		return cfg, badInput("--local-port %d: not a port (1-65535)", lport)
	}
	cfg.Port, cfg.LocalPort = uint16(port), uint16(lport)
	if a := c.String("addr"); a != "" {
		addr, err := netip.ParseAddr(a)
		if err != nil || addr.Zone() != "" {
			return cfg, badInput("--addr %q: not an IP address", a)
		}
		cfg.Addr = addr
	}
	switch s := c.String("source"); s {
	case "", sampler.SourceNetlink, sampler.SourceProc:
		cfg.Source = s
	default:
		return cfg, badInput("--source %q: want netlink or proc", s)
	}
	if ns := c.String("netns"); ns != "" {
		if _, err := os.Stat(sampler.NetNSPath(ns)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return cfg, badInput("--netns %q: no such network namespace (%s)", ns, sampler.NetNSPath(ns))
			}
			return cfg, badInput("--netns %q: %v", ns, err)
		}
		cfg.NetNS = ns
	}
	return cfg, nil
}

// runExporter is `loadcap sample --listen ADDR`: sample on the interval and
// serve the latest sample at /metrics until interrupted.
func runExporter(c *cli.Context) error {
	wc, err := sampleConfig(c)
	if err != nil {
		return err
	}
	interval, top := c.Duration("interval"), c.Int("top")
	if interval <= 0 {
		return badInput("--interval %s: must be positive", interval)
	}
	if top < 0 {
		return badInput("--top %d: must be 0 or more", top)
	}
	if top == 0 {
		top = -1 // every destination under "other"
	}
	addr := c.String("listen")
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return badInput("--listen %q: want HOST:PORT (such as 127.0.0.1:9869 or :9869)", addr)
	}
	e, err := exporter.New(exporter.Config{
		Port: wc.Port, Addr: wc.Addr, LocalPort: wc.LocalPort,
		Top: top, Interval: interval, NetNS: wc.NetNS, Source: wc.Source,
	})
	if err != nil {
		return err
	}
	defer e.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	fmt.Fprintf(c.App.ErrWriter, "loadcap sample: serving metrics at http://%s/metrics (sampling every %s)\n", ln.Addr(), interval)
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return e.Serve(ctx, ln)
}
