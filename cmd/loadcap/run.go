package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/embedded"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

func env(name string) []string { return []string{"LOADCAP_" + name} }

func runCommand() *cli.Command {
	def := loadgen.DefaultGenConfig()
	return &cli.Command{
		Name:  "run",
		Usage: "drive a write workload, sample socket states, save a result file",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: run.ChildFlag, Hidden: true, Usage: "read the run's configuration as a JSON document on stdin and print the result document (the load generator a lab starts)"},
			&cli.StringSliceFlag{Name: "targets", Value: cli.NewStringSlice("embedded"), EnvVars: env("TARGETS"), Usage: "comma-separated target URLs or names; every write goes to every target"},
			&cli.StringFlag{Name: "config", EnvVars: env("CONFIG"), Usage: "config file defining target names ([targets] NAME = \"URL\"); default ./" + run.DefaultConfigFile + " when it exists"},
			&cli.StringFlag{Name: "profiles-dir", EnvVars: env("PROFILES_DIR"), Usage: "directory of user profiles (NAME.toml client, NAME.conf sysctl), found by NAME after the built-ins (default ./profiles.d when it exists)"},
			&cli.StringFlag{Name: "rate", Value: "1k", EnvVars: env("RATE"), Usage: "writes per second, per target (k/m suffixes)"},
			&cli.DurationFlag{Name: "duration", Value: 30 * time.Second, EnvVars: env("DURATION"), Usage: "length of the run"},
			&cli.StringFlag{Name: "pattern", EnvVars: env("PATTERN"), Usage: "write and idle phases instead of --duration (which, if given, must equal the pattern's length), e.g. 'write 10s, idle 90s, write 10s'"},
			&cli.IntFlag{Name: "batch", Value: 100, EnvVars: env("BATCH"), Usage: "lines (rows) per write"},
			&cli.StringFlag{Name: "client", Value: "keepalive", EnvVars: env("CLIENT"), Usage: "client profile name or file"},
			&cli.StringFlag{Name: "dial", EnvVars: env("DIAL"), Usage: "override the profile's dial mode: connect, bind or bind-no-port"},
			&cli.BoolFlag{Name: "linger0", EnvVars: env("LINGER0"), Usage: "close connections with RST (SO_LINGER 0)"},
			&cli.StringFlag{Name: "sysctl", Value: "host", EnvVars: env("SYSCTL"), Usage: "sysctl profile name or file; anything but host needs --lab"},
			&cli.BoolFlag{Name: "lab", EnvVars: env("LAB"), Usage: "run the client in a throw-away network namespace with the sysctl profile applied"},
			&cli.IntFlag{Name: "lab-ports", EnvVars: env("LAB_PORTS"), Usage: "with --lab: shrink the client's ip_local_port_range to this many ports so exhaustion comes in seconds"},
			&cli.DurationFlag{Name: "lab-firewall-idle", EnvVars: env("LAB_FIREWALL_IDLE"), Usage: "with --lab: a stateful firewall between client and servers silently drops flows idle this long (whole seconds)"},
			&cli.IntFlag{Name: "lab-nat-ports", EnvVars: env("LAB_NAT_PORTS"), Usage: "with --lab: a router masquerades the clients to this many translated ports (see docs/nat.md); records its conntrack table over time; with --find-limit every client runs each step at once"},
			&cli.IntFlag{Name: "lab-clients", EnvVars: env("LAB_CLIENTS"), Usage: "with --lab-nat-ports: client namespaces behind the router, each running the load generator at --rate"},
			&cli.StringFlag{Name: "lab-nat-sysctl", EnvVars: env("LAB_NAT_SYSCTL"), Usage: "with --lab-nat-ports: the sysctl profile written into the NAT router (default nat-default; nat-short-tw has a 30 s conntrack TIME_WAIT)"},
			&cli.DurationFlag{Name: "lab-nat-tw", EnvVars: env("LAB_NAT_TW"), Usage: "with --lab-nat-ports: the router's nf_conntrack_tcp_timeout_time_wait (whole seconds; default 120s)"},
			&cli.StringFlag{Name: "lab-targets", EnvVars: env("LAB_TARGETS"), Usage: "with --lab: number of embedded targets, each on its own server address (same as --targets embedded,embedded,...); several counts (1,2) make it an axis of the matrix"},
			&cli.BoolFlag{Name: "find-limit", EnvVars: env("FIND_LIMIT"), Usage: "raise the rate until writes fail with port exhaustion (needs --lab)"},
			&cli.IntFlag{Name: "parallel", EnvVars: env("PARALLEL"), Usage: "with several --client or --sysctl profiles: cells run at once, each in its own lab (0: every cell, up to 4 per CPU)"},
			&cli.StringFlag{Name: "out", Value: "./results", EnvVars: env("OUT"), Usage: "directory for result files (empty: do not save)"},
			&cli.BoolFlag{Name: "json", EnvVars: env("JSON"), Usage: "print the result document on stdout instead of the text summary"},
			&cli.BoolFlag{Name: "gzip", EnvVars: env("GZIP"), Usage: "gzip request bodies"},
			&cli.Int64Flag{Name: "seed", Value: def.Seed, EnvVars: env("SEED"), Usage: "seed of the generated values"},
			&cli.StringFlag{Name: "measurement", Value: def.Measurement, EnvVars: env("MEASUREMENT"), Usage: "measurement (table) name"},
			&cli.IntFlag{Name: "series", Value: def.Series, EnvVars: env("SERIES"), Usage: "number of distinct series (tag cardinality)"},
			&cli.IntFlag{Name: "tags", Value: def.Tags, EnvVars: env("TAGS"), Usage: "tags per line"},
			&cli.IntFlag{Name: "floats", Value: def.Floats, EnvVars: env("FLOATS"), Usage: "float fields per line"},
			&cli.IntFlag{Name: "ints", Value: def.Ints, EnvVars: env("INTS"), Usage: "integer fields per line"},
			&cli.IntFlag{Name: "bools", Value: def.Bools, EnvVars: env("BOOLS"), Usage: "boolean fields per line"},
			&cli.IntFlag{Name: "strings", Value: def.Strings, EnvVars: env("STRINGS"), Usage: "string fields per line"},
			&cli.StringFlag{Name: "precision", Value: def.Precision, EnvVars: env("PRECISION"), Usage: "timestamp precision: ns, us, ms or s"},
			&cli.IntFlag{Name: "workers", Value: 8, EnvVars: env("WORKERS"), Usage: "initial workers per target"},
			&cli.IntFlag{Name: "max-workers", Value: 512, EnvVars: env("MAX_WORKERS"), Usage: "most workers per target (writes queue beyond, latency still counted from their intended start)"},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, EnvVars: env("TIMEOUT"), Usage: "timeout of one write (connect, send, response)"},
			&cli.DurationFlag{Name: "sample-interval", Value: 250 * time.Millisecond, EnvVars: env("SAMPLE_INTERVAL"), Usage: "socket-state sampling interval"},
			&cli.DurationFlag{Name: "sink-latency", EnvVars: env("SINK_LATENCY"), Usage: "embedded sink: latency added to every write"},
			&cli.Float64Flag{Name: "sink-error-rate", EnvVars: env("SINK_ERROR_RATE"), Usage: "embedded sink: fraction of writes answered 500"},
			&cli.BoolFlag{Name: "quiet", EnvVars: env("QUIET"), Usage: "no live progress line"},
			&cli.StringFlag{Name: "hdr-log", EnvVars: env("HDR_LOG"), Usage: "write the latency histograms (µs) to this file as an HdrHistogram interval log, one interval per second per target"},
			&cli.StringFlag{Name: "vegeta-results", EnvVars: env("VEGETA_RESULTS"), Usage: "write every write's result to this file in vegeta's encoding (vegeta report / vegeta plot read it)"},
			&cli.StringFlag{Name: "sql-mode", Value: "insert", EnvVars: env("SQL_MODE"), Usage: "write mode of postgres:// and embedded-pg targets without ?mode=: insert, values or copy"},
			&cli.BoolFlag{Name: "sql-create", Value: true, EnvVars: env("SQL_CREATE"), Usage: "create the SQL table if it is missing (--sql-create=false: it must exist and match)"},
			&cli.StringFlag{Name: "shard", EnvVars: env("SHARD"), Usage: "I/N: run shard I of N of a fleet run: pace --rate/N (--rate is then the fleet's total per target) and write series I, I+N, ...; without it, JOB_COMPLETION_INDEX and LOADCAP_SHARDS are read (Kubernetes Indexed Job)"},
			&cli.StringFlag{Name: "start-at", EnvVars: env("START_AT"), Usage: "RFC 3339 time at which pacing starts, common to every shard of a fleet run (at most 24h ahead; a past time starts at once, refused if past by more than --duration)"},
			&cli.StringFlag{Name: "host", EnvVars: env("HOST"), Usage: "host name recorded in the result (default: this machine's host name)"},
			&cli.StringFlag{Name: "fail-on", EnvVars: env("FAIL_ON"), Usage: "exit status 1 when a condition holds for any target after the run, e.g. 'errors>1%,p99>250ms,achieved<99%,port_errors>0' (the result is still saved)"},
			&cli.StringFlag{Name: "tls-ca", EnvVars: env("TLS_CA"), Usage: "https targets: PEM file of CA certificates trusted besides the system's (postgres:// targets: sslrootcert= in the URL)"},
			&cli.StringFlag{Name: "tls-cert", EnvVars: env("TLS_CERT"), Usage: "https targets: client certificate (PEM), with --tls-key"},
			&cli.StringFlag{Name: "tls-key", EnvVars: env("TLS_KEY"), Usage: "https targets: key of the client certificate (PEM), with --tls-cert"},
			&cli.StringFlag{Name: "tls-server-name", EnvVars: env("TLS_SERVER_NAME"), Usage: "https targets: name the server certificate is checked against and sent in SNI (default: the target's host)"},
			&cli.BoolFlag{Name: "tls-insecure", EnvVars: env("TLS_INSECURE"), Usage: "https targets: do not verify the server's certificate (warned, and recorded in the result)"},
			&cli.StringFlag{Name: "cpuprofile", Hidden: true, Usage: "write a Go CPU profile of the run to this file"},
		},
		Action: runAction,
	}
}

func runAction(c *cli.Context) error {
	if c.Bool(run.ChildFlag) {
		return labChild(c)
	}
	rate, err := capacity.ParseRate(c.String("rate"))
	if err != nil {
		return badInput("%v", err)
	}
	if r := c.Float64("sink-error-rate"); r < 0 || r > 1 {
		return badInput("bad --sink-error-rate %v: want 0..1", r)
	}
	// Zero means "the default" inside run.Config; given explicitly it is a
	// mistake, not a request for the default.
	for _, name := range []string{"workers", "max-workers"} {
		if c.IsSet(name) && c.Int(name) < 1 {
			return badInput("bad --%s %d: want at least 1", name, c.Int(name))
		}
	}
	for _, name := range []string{"timeout", "sample-interval"} {
		if c.IsSet(name) && c.Duration(name) <= 0 {
			return badInput("bad --%s %s: must be above 0", name, c.Duration(name))
		}
	}
	failOn, err := results.ParseFailOn(c.String("fail-on"))
	if err != nil {
		return badInput("%v", err)
	}
	var targets []string
	for _, t := range c.StringSlice("targets") {
		targets = append(targets, strings.Split(t, ",")...)
	}
	var labCounts []int
	if c.IsSet("lab-targets") {
		if !c.Bool("lab") {
			return badInput("--lab-targets needs --lab")
		}
		if labCounts, err = run.ParseLabTargets(c.String("lab-targets")); err != nil {
			return badInput("%v", err)
		}
		targets = run.LabTargets(labCounts[0])
	}
	names, err := run.LoadConfigFile(c.String("config"))
	if err != nil {
		return badInput("%v", err)
	}
	cfg := run.Config{
		Targets: targets, TargetNames: names, ProfilesDir: c.String("profiles-dir"), Rate: rate, Duration: c.Duration("duration"), Batch: c.Int("batch"),
		Client: c.String("client"), DialMode: c.String("dial"), Linger0: c.Bool("linger0"),
		Sysctl: c.String("sysctl"), Lab: c.Bool("lab"), FindLimit: c.Bool("find-limit"),
		Gzip: c.Bool("gzip"), Workers: c.Int("workers"), MaxWorkers: c.Int("max-workers"),
		LabPorts: c.Int("lab-ports"), LabTargetCounts: labCounts,
		Parallel:        c.Int("parallel"),
		LabFirewallIdle: c.Duration("lab-firewall-idle"),
		LabNATPorts:     c.Int("lab-nat-ports"),
		LabClients:      c.Int("lab-clients"),
		LabNATTimeWait:  c.Duration("lab-nat-tw"),
		LabNATSysctl:    c.String("lab-nat-sysctl"),
		Pattern:         c.String("pattern"),
		DurationSet:     c.IsSet("duration"),
		Timeout:         c.Duration("timeout"), SampleInterval: c.Duration("sample-interval"), Out: c.String("out"),
		Gen: loadgen.GenConfig{
			Measurement: c.String("measurement"), Series: c.Int("series"), Tags: c.Int("tags"),
			Floats: c.Int("floats"), Ints: c.Int("ints"), Bools: c.Int("bools"), Strings: c.Int("strings"),
			Precision: c.String("precision"), Seed: c.Int64("seed"),
		},
		PrecisionSet:  c.IsSet("precision"),
		Sink:          embedded.Options{Latency: c.Duration("sink-latency"), ErrorRate: c.Float64("sink-error-rate"), Seed: c.Int64("seed")},
		Version:       version,
		SQLMode:       c.String("sql-mode"),
		SQLNoCreate:   !c.Bool("sql-create"),
		HDRLog:        c.String("hdr-log"),
		VegetaResults: c.String("vegeta-results"),
		TLS: loadgen.TLSOptions{
			CAFile: c.String("tls-ca"), CertFile: c.String("tls-cert"), KeyFile: c.String("tls-key"),
			ServerName: c.String("tls-server-name"), Insecure: c.Bool("tls-insecure"),
		},
	}
	if err := fleetFlags(c, &cfg); err != nil {
		return err
	}
	live := !c.Bool("quiet") && isTerminal(os.Stderr)
	if live {
		cfg.OnTick = func(t loadgen.Tick, tw int) {
			fmt.Fprintf(os.Stderr, "\r%s\x1b[K", run.ProgressLine(t, tw))
		}
	}
	if path := c.String("cpuprofile"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return badInput("bad --cpuprofile %q: %v", path, err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return badInput("bad --cpuprofile %q: %v", path, err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := interruptContext(c.Context)
	defer stop()
	if c.IsSet("parallel") && !run.IsMatrix(cfg) {
		return badInput("--parallel applies to a matrix of profiles (several --client or --sysctl)")
	}
	if run.IsMatrix(cfg) {
		if len(failOn) > 0 {
			return badInput("--fail-on applies to one run, not to a matrix of profiles")
		}
		m, path, err := run.ExecuteMatrix(ctx, cfg)
		if err != nil && run.IsInputError(err) {
			return badInput("%v", err)
		}
		if m != nil {
			if c.Bool("json") {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				enc.Encode(m)
			} else {
				run.WriteMatrix(os.Stdout, m)
				if path != "" {
					fmt.Printf("matrix: %s\n", path)
				}
			}
		}
		if err != nil {
			return cli.Exit(err.Error(), 1)
		}
		return nil
	}
	out, err := run.Execute(ctx, cfg)
	if live {
		fmt.Fprint(os.Stderr, "\r\x1b[K")
	}
	if err != nil {
		if run.IsInputError(err) {
			return badInput("%v", err)
		}
		if out == nil {
			return cli.Exit(err.Error(), 1)
		}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out.Doc); err != nil {
			return err
		}
	} else if err := results.WriteSummary(os.Stdout, out.Doc, out.Path); err != nil {
		return err
	}
	// The run completed but something went wrong after it (the result
	// could not be saved where asked, say): what was measured is printed
	// above, the error goes to stderr, and the exit status says so.
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	// --fail-on judges a completed run only: an interrupted one was not
	// the run that was asked for.
	if !out.Doc.Interrupted {
		if held := results.CheckFailOn(failOn, out.Doc); len(held) > 0 {
			return cli.Exit("fail-on: "+strings.Join(held, "; "), 1)
		}
	}
	// A target that accepted no write was not measured: the run failed.
	if un := results.Unreached(out.Doc); len(un) > 0 {
		var names []string
		for _, t := range un {
			names = append(names, t.Name)
		}
		return cli.Exit(fmt.Sprintf("no write was accepted by %s (the result is saved)", strings.Join(names, ", ")), 1)
	}
	return nil
}

// interruptContext is cancelled by the first SIGINT or SIGTERM, so the run
// stops and still saves what it measured; a second signal exits at once
// with status 130, after removing the labs this process made (abort).
func interruptContext(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
		case <-ctx.Done():
			return
		}
		fmt.Fprintln(os.Stderr, "\nloadcap: interrupted: stopping and saving what was measured (signal again to quit now)")
		cancel()
		<-sigs
		abort()
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// labChild is `loadcap run --lab-child`: one lab step, configured by the
// document on stdin, its result document on stdout.
func labChild(c *cli.Context) error {
	cfg, err := run.ReadChildConfig(os.Stdin, version)
	if err != nil {
		return badInput("%v", err)
	}
	ctx, stop := interruptContext(c.Context)
	defer stop()
	out, err := run.Execute(ctx, cfg)
	if err != nil && (run.IsInputError(err) || out == nil) {
		return cli.Exit(err.Error(), 1)
	}
	return json.NewEncoder(os.Stdout).Encode(out.Doc)
}
