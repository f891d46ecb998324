package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/embedded"
)

// sinkCommand is `loadcap sink`: the embedded InfluxDB-compatible write sink
// on its own, until SIGINT or SIGTERM.
func sinkCommand() *cli.Command {
	return &cli.Command{
		Name:  "sink",
		Usage: "run the embedded InfluxDB-compatible write sink (v1, v2 and v3 write paths) until interrupted",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8086", EnvVars: []string{"LOADCAP_LISTEN"}, Usage: "address to listen on (host:port; port 0 picks a free one)"},
			&cli.StringFlag{Name: "pg-listen", EnvVars: []string{"LOADCAP_PG_LISTEN"}, Usage: "also run the PostgreSQL-wire sink on this address (host:port; counts rows, stores nothing)"},
			&cli.DurationFlag{Name: "sink-latency", EnvVars: []string{"LOADCAP_SINK_LATENCY"}, Usage: "latency added to every write (before every ReadyForQuery on --pg-listen)"},
			&cli.Float64Flag{Name: "sink-error-rate", EnvVars: []string{"LOADCAP_SINK_ERROR_RATE"}, Usage: "fraction (0..1) of writes answered with an error (HTTP 500; SQLSTATE XX000 on --pg-listen)"},
			&cli.Int64Flag{Name: "seed", Value: 1, EnvVars: []string{"LOADCAP_SEED"}, Usage: "seed of the error-injection sequence"},
			&cli.DurationFlag{Name: "stats-interval", Value: 5 * time.Second, EnvVars: []string{"LOADCAP_STATS_INTERVAL"}, Usage: "interval of the stats line (0: only at exit)"},
		},
		Action: sinkAction,
	}
}

func sinkAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return badInput("sink: unexpected argument %q", c.Args().First())
	}
	addr := c.String("listen")
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return badInput("bad --listen %q: want host:port", addr)
	}
	opts := embedded.Options{
		Latency:   c.Duration("sink-latency"),
		ErrorRate: c.Float64("sink-error-rate"),
		Seed:      c.Int64("seed"),
	}
	if err := opts.Validate(); err != nil {
		return badInput("bad --sink-latency or --sink-error-rate: %v", err)
	}
	every := c.Duration("stats-interval")
	if every < 0 {
		return badInput("bad --stats-interval %v: negative", every)
	}
	pgAddr := c.String("pg-listen")
	if pgAddr != "" {
		if _, port, err := net.SplitHostPort(pgAddr); err != nil || port == "" {
			return badInput("bad --pg-listen %q: want host:port", pgAddr)
		}
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The sinks and the labels of their lines, the line-protocol sink first.
	type running struct {
		embedded.Sink
		label string
	}
	var sinks []running
	defer func() {
		for _, s := range sinks {
			s.Close()
		}
	}()
	s, err := embedded.Start(loadgen.KindEmbedded, addr, opts)
	if err != nil {
		return badInput("bad --listen %q: %v", addr, err)
	}
	sinks = append(sinks, running{s, ""})
	if pgAddr != "" {
		pgs, err := embedded.Start(loadgen.KindEmbeddedPG, pgAddr, opts)
		if err != nil {
			return badInput("bad --pg-listen %q: %v", pgAddr, err)
		}
		sinks = append(sinks, running{pgs, "pg "})
	}
	out := c.App.Writer
	fmt.Fprintf(out, "loadcap sink: listening on http://%s (/write, /api/v2/write, /api/v3/write_lp, /ping, /health)\n", s.Addr())
	if len(sinks) > 1 {
		fmt.Fprintf(out, "loadcap sink: PostgreSQL wire on %s (trust auth; INSERT, COPY FROM STDIN; rows counted, nothing stored)\n", sinks[1].Target())
	}

	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	start := time.Now()
	for _, s := range sinks {
		s.Progress(start) // the rates count from here
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-tick:
			lines := make([]string, len(sinks))
			changed := false
			for i, s := range sinks {
				var ch bool
				lines[i], ch = s.Progress(now)
				changed = changed || ch
			}
			if !changed {
				continue // idle: no new line
			}
			for i, s := range sinks {
				sep := ""
				if s.label != "" {
					sep = "| "
				}
				fmt.Fprintf(out, "loadcap sink: %s%s%s\n", s.label, sep, lines[i])
			}
		}
	}
	stop()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range sinks {
		if err := s.Shutdown(shutCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintln(os.Stderr, "loadcap sink:", err)
		}
		_ = s.Close()
		fmt.Fprintf(out, "loadcap sink: %sstopped | %s\n", s.label, s.Summary())
	}
	return nil
}
