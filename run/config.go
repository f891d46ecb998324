package run

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/loadcap/loadcap/fleet"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/embedded"
	"github.com/loadcap/loadcap/loadgen/pg"
	"github.com/loadcap/loadcap/profiles"
)

// InputError is a problem with what the user asked for: a flag, a URL or a
// file. The command exits with status 2 and prints its one line.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// IsInputError reports whether err is (or wraps) an InputError.
func IsInputError(err error) bool {
	var ie *InputError
	return errors.As(err, &ie)
}

func badInput(format string, args ...any) error {
	return &InputError{Err: fmt.Errorf(format, args...)}
}

// Config is one run as the user asked for it.
type Config struct {
	// Targets are target URLs, built-in targets or names from TargetNames.
	Targets []string
	// TargetNames are the target names of the config file (loadcap.toml or
	// --config); nil when there is none.
	TargetNames *loadgen.TargetNames
	// ProfilesDir is the user profiles directory (--profiles-dir; "": the
	// environment's or ./profiles.d when it exists).
	ProfilesDir string
	Rate        float64
	Duration    time.Duration
	Batch       int
	// Client is the client profile name or file; DialMode and Linger0, when
	// set, override the profile's.
	Client   string
	DialMode string
	Linger0  bool
	// Sysctl is the sysctl profile name or file ("host" without --lab).
	Sysctl    string
	Lab       bool
	FindLimit bool
	Gzip      bool
	Gen       loadgen.GenConfig
	// PrecisionSet is true when the user chose --precision explicitly.
	PrecisionSet bool
	Workers      int
	MaxWorkers   int
	Timeout      time.Duration
	// SampleInterval is the socket-state sampling interval (0: 250 ms).
	SampleInterval time.Duration
	// Out is the directory for result files ("" disables saving).
	Out string
	// Sink configures the embedded sinks of "embedded" and "embedded-pg"
	// targets: latency and fault injection.
	Sink embedded.Options
	// SinkAddr is where embedded sinks listen ("": a free loopback port).
	SinkAddr string
	// Pattern, when set, replaces the constant rate over Duration with
	// write and idle phases ("write 10s, idle 90s, write 10s"); the run
	// lasts as long as the phases. It needs at least one write phase.
	Pattern string
	// DurationSet is true when the user gave Duration explicitly (--duration
	// or LOADCAP_DURATION). With a Pattern, which sets the run's length, an
	// explicit Duration other than the pattern's length is refused rather
	// than silently overridden.
	DurationSet bool
	// LabFirewallIdle puts a stateful firewall (a router namespace with
	// connection tracking) between client and servers that silently drops
	// flows idle for longer than this.
	LabFirewallIdle time.Duration
	// LabPorts shrinks the client namespace's port range to that many ports.
	LabPorts int
	// LabTargetCounts, with more than one count, makes the number of lab
	// targets an axis of the matrix (--lab-targets 1,2): each count x client
	// x sysctl is a cell, with that many embedded targets. Targets holds the
	// first count's.
	LabTargetCounts []int
	// Parallel is how many cells of a matrix (several Client or Sysctl
	// profiles) run at once, each in its own lab; 0: DefaultParallel.
	Parallel int
	// LabNATPorts, when positive, puts a translating router (masquerade to
	// that many ports) between LabClients client namespaces and the
	// servers; LabNATTimeWait is its conntrack TIME_WAIT timeout (0: 120 s).
	LabNATPorts    int
	LabClients     int
	LabNATTimeWait time.Duration
	// LabNATSysctl is the sysctl profile written into the NAT router
	// ("": nat-default); LabNATTimeWait overrides its TIME_WAIT timeout.
	LabNATSysctl string
	// Exe is the loadcap binary the lab re-executes in its namespaces
	// ("": this process's executable).
	Exe string
	// SQLMode is the write mode of SQL targets whose URL has no mode=
	// (insert, values or copy; "": insert).
	SQLMode string
	// SQLNoCreate turns off creating a missing table on SQL targets
	// (--sql-create=false): the table must exist and match.
	SQLNoCreate bool
	// Version is loadcap's version, recorded in the document.
	Version string
	// OnTick receives live progress.
	OnTick func(loadgen.Tick, int)
	// HDRLog, when set, is a file to write the latency histograms to as an
	// HdrHistogram interval log (one interval per tick per target).
	HDRLog string
	// VegetaResults, when set, is a file to write every write's result to
	// in vegeta's gob encoding (for vegeta report / vegeta plot).
	VegetaResults string
	// Shard, when its Count is set, makes this run one shard of a fleet run
	// (--shard I/N): Rate stays the fleet's total per target, this process
	// paces Rate/Count and writes its own part of the series space.
	Shard fleet.Shard
	// StartAt, when set, is the common start time of a fleet run
	// (--start-at): pacing and sampling start then.
	StartAt time.Time
	// Host, when set, is recorded as the result's host instead of the
	// machine's host name (--host).
	Host string
	// TLS are the TLS settings of https targets (--tls-ca, --tls-cert,
	// --tls-key, --tls-server-name, --tls-insecure).
	TLS loadgen.TLSOptions
}

func (c Config) sinkAddr() string {
	if c.SinkAddr != "" {
		return c.SinkAddr
	}
	return "127.0.0.1:0"
}

// pacer is the run's schedule: constant, or the pattern's phases.
func (p *plan) pacer(rate float64) vegeta.Pacer {
	if len(p.phases) > 0 {
		return loadgen.PatternPacer{Phases: p.phases, PerSecond: rate}
	}
	return loadgen.NewPacer(rate)
}

// plan is a validated Config.
type plan struct {
	cfg     Config
	phases  []loadgen.Phase
	targets []loadgen.TargetSpec
	client  *profiles.Client
	gen     *loadgen.Generator
	// tls is the client TLS configuration of https targets.
	tls *tls.Config
}

// validate checks everything before any traffic is sent; every error is an
// InputError naming the bad value.
func validate(cfg Config) (*plan, error) {
	p := &plan{cfg: cfg}
	if !(cfg.Rate > 0) {
		return nil, badInput("bad --rate %v: must be above 0", cfg.Rate)
	}
	if cfg.Pattern != "" {
		ph, err := loadgen.ParsePattern(cfg.Pattern)
		if err != nil {
			return nil, &InputError{Err: err}
		}
		d := loadgen.PatternDuration(ph)
		if cfg.DurationSet && cfg.Duration != d {
			return nil, badInput("bad --duration %s with --pattern %q: the pattern sets the run's length (%s); give one or the other", cfg.Duration, cfg.Pattern, d)
		}
		if loadgen.PatternWrites(ph, cfg.Rate) < 1 {
			return nil, badInput("bad --rate %v: less than one write in the write phases of --pattern %q", cfg.Rate, cfg.Pattern)
		}
		p.phases = ph
		cfg.Duration = d
		p.cfg.Duration = d
	}
	if cfg.Duration <= 0 {
		return nil, badInput("bad --duration %s: must be above 0", cfg.Duration)
	}
	if err := validateFleet(cfg, time.Now()); err != nil {
		return nil, err
	}
	if cfg.Batch < 1 || cfg.Batch > 1_000_000 {
		return nil, badInput("bad --batch %d: want 1..1000000", cfg.Batch)
	}
	if cfg.Workers < 0 || cfg.MaxWorkers < 0 {
		return nil, badInput("bad --workers/--max-workers %d/%d: must not be negative", cfg.Workers, cfg.MaxWorkers)
	}
	if cfg.Timeout < 0 {
		return nil, badInput("bad --timeout %s: must not be negative", cfg.Timeout)
	}
	if cfg.Workers > 0 && cfg.MaxWorkers > 0 && cfg.Workers > cfg.MaxWorkers {
		return nil, badInput("bad --workers %d: above --max-workers %d", cfg.Workers, cfg.MaxWorkers)
	}
	if cfg.SampleInterval < 0 || (cfg.SampleInterval > 0 && cfg.SampleInterval < 10*time.Millisecond) {
		return nil, badInput("bad --sample-interval %s: want at least 10ms", cfg.SampleInterval)
	}
	if n := cfg.Rate * cfg.Duration.Seconds(); n < 1 {
		return nil, badInput("bad --rate %v: less than one write in --duration %s", cfg.Rate, cfg.Duration)
	}
	if cfg.SQLMode != "" {
		if err := pg.CheckMode(cfg.SQLMode); err != nil {
			return nil, badInput("bad --sql-mode %q: want insert, values or copy", cfg.SQLMode)
		}
	}
	if cfg.Sink.Latency < 0 {
		return nil, badInput("bad --sink-latency %s: must not be negative", cfg.Sink.Latency)
	}
	if err := cfg.Sink.Validate(); err != nil {
		return nil, &InputError{Err: err}
	}
	ts, err := loadgen.ParseNamedTargets(cfg.Targets, cfg.TargetNames)
	if err != nil {
		return nil, &InputError{Err: err}
	}
	for _, t := range ts {
		if err := checkTarget(t); err != nil {
			return nil, &InputError{Err: err}
		}
	}
	p.targets = ts
	if p.tls, err = cfg.TLS.Config(); err != nil {
		return nil, &InputError{Err: err}
	}
	ld, err := profiles.NewLoader(cfg.ProfilesDir, os.Stderr)
	if err != nil {
		return nil, &InputError{Err: err}
	}
	// The directory in use, absolute: lab runs hand it to the processes
	// they start in their namespaces.
	p.cfg.ProfilesDir = ""
	if ld.Dir != "" {
		if p.cfg.ProfilesDir, err = filepath.Abs(ld.Dir); err != nil {
			return nil, &InputError{Err: fmt.Errorf("profiles directory: %w", err)}
		}
	}
	c, err := ld.LoadClient(cfg.Client)
	if err != nil {
		return nil, &InputError{Err: err}
	}
	if cfg.DialMode != "" {
		c.DialMode = cfg.DialMode
	}
	if cfg.Linger0 {
		c.Linger0 = true
	}
	if err := c.Validate(); err != nil {
		return nil, &InputError{Err: fmt.Errorf("client profile %s: %w", c.Name, err)}
	}
	p.client = c
	if cfg.Sysctl == "" {
		p.cfg.Sysctl = "host"
	}
	if p.cfg.Sysctl != "host" && !cfg.Lab {
		s, err := ld.LoadSysctl(p.cfg.Sysctl)
		if err != nil {
			return nil, &InputError{Err: err}
		}
		return nil, badInput("sysctl profile %q needs --lab (loadcap never writes the host's sysctls); to apply it to this host yourself run: %s", p.cfg.Sysctl, sysctlCommands(s))
	}
	if cfg.FindLimit && !cfg.Lab {
		return nil, badInput("--find-limit needs --lab: it drives the client into port exhaustion, which loadcap only does in a throw-away namespace")
	}
	if cfg.LabPorts < 0 || cfg.LabPorts > 64512 {
		return nil, badInput("bad --lab-ports %d: want 1..64512", cfg.LabPorts)
	}
	if cfg.LabPorts > 0 && !cfg.Lab {
		return nil, badInput("--lab-ports needs --lab")
	}
	if err := checkLabNAT(cfg); err != nil {
		return nil, err
	}
	if cfg.LabFirewallIdle != 0 {
		if !cfg.Lab {
			return nil, badInput("--lab-firewall-idle needs --lab: the firewall is a router namespace of the lab")
		}
		if cfg.LabFirewallIdle < time.Second || cfg.LabFirewallIdle%time.Second != 0 {
			return nil, badInput("bad --lab-firewall-idle %s: want whole seconds, at least 1s", cfg.LabFirewallIdle)
		}
	}
	gc := cfg.Gen
	gc.Shard, gc.Shards = cfg.Shard.Index, cfg.Shard.Count
	if !cfg.PrecisionSet {
		for _, t := range ts {
			if t.Precision != "" {
				gc.Precision = normalizePrecision(t.Precision)
				break
			}
		}
	}
	g, err := loadgen.NewGenerator(gc)
	if err != nil {
		return nil, &InputError{Err: err}
	}
	p.gen = g
	p.cfg.Gen = g.Config()
	return p, nil
}

func normalizePrecision(p string) string {
	switch p {
	case "n", "ns", "nanosecond":
		return "ns"
	case "u", "us", "microsecond":
		return "us"
	case "ms", "millisecond":
		return "ms"
	case "s", "second":
		return "s"
	}
	return p
}

func sysctlCommands(s *profiles.Sysctl) string {
	out := ""
	for i, e := range s.Entries {
		if i > 0 {
			out += "; "
		}
		out += fmt.Sprintf("sysctl -w %s=%q", e.Key, e.Value)
	}
	return out
}
