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

	"github.com/loadcap/loadcap/loadgen/pg"
	"github.com/loadcap/loadcap/loadgen/sink"
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
			&cli.DurationFlag{Name: "sink-latency", EnvVars: []string{"LOADCAP_SINK_LATENCY"}, Usage: "latency added to every write"},
			&cli.Float64Flag{Name: "sink-error-rate", EnvVars: []string{"LOADCAP_SINK_ERROR_RATE"}, Usage: "fraction (0..1) of writes answered 500"},
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
	opts := sink.Options{
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

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return badInput("bad --listen %q: %v", addr, err)
	}
	var pgs *pg.Sink
	if pgAddr := c.String("pg-listen"); pgAddr != "" {
		if _, port, err := net.SplitHostPort(pgAddr); err != nil || port == "" {
			ln.Close()
			return badInput("bad --pg-listen %q: want host:port", pgAddr)
		}
		pgs, err = pg.StartSink(pgAddr, pg.SinkOptions{})
		if err != nil {
			ln.Close()
			return badInput("bad --pg-listen %q: %v", pgAddr, err)
		}
		defer pgs.Close()
	}
	s := sink.New(opts)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	out := c.App.Writer
	fmt.Fprintf(out, "loadcap sink: listening on http://%s (/write, /api/v2/write, /api/v3/write_lp, /ping, /health)\n", ln.Addr())
	if pgs != nil {
		fmt.Fprintf(out, "loadcap sink: PostgreSQL wire on %s (trust auth; INSERT, COPY FROM STDIN; rows counted, nothing stored)\n", pgs.URL())
	}

	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	prev, prevAt := s.Stats(), time.Now()
	prevPG := ""
	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case serveErr = <-served:
			break loop
		case now := <-tick:
			st := s.Stats()
			pgLine := ""
			if pgs != nil {
				pgLine = pgs.Stats().String()
			}
			if st.Requests == prev.Requests && st.Connections == prev.Connections &&
				st.OpenConnections == prev.OpenConnections && pgLine == prevPG {
				continue // idle: no new line
			}
			secs := now.Sub(prevAt).Seconds()
			fmt.Fprintf(out, "loadcap sink: %.0f writes/s %.0f lines/s | %s\n",
				float64(st.Writes-prev.Writes)/secs, float64(st.Lines-prev.Lines)/secs, st)
			if pgs != nil {
				fmt.Fprintf(out, "loadcap sink: pg | %s\n", pgLine)
			}
			prev, prevAt, prevPG = st, now, pgLine
		}
	}
	stop()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(shutCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintln(os.Stderr, "loadcap sink:", err)
	}
	_ = s.Close()
	fmt.Fprintf(out, "loadcap sink: stopped | %s\n", s.Stats())
	if pgs != nil {
		pgs.Close()
		fmt.Fprintf(out, "loadcap sink: pg stopped | %s\n", pgs.Stats())
	}
	if serveErr != nil {
		return cli.Exit(fmt.Sprintf("sink: %v", serveErr), 1)
	}
	return nil
}
