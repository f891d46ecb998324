package run

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loadcap/loadcap/lab"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/profiles"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/sampler"
)

// labPort and labPGPort are the ports the lab's sinks listen on in the
// server namespace: the InfluxDB-compatible one and the PostgreSQL-wire one.
const (
	labPort   = 8086
	labPGPort = 5432
)

// labEnv is one lab with its sinks running: the load generator is a re-exec
// of loadcap inside the client namespace, so that every socket it opens and
// every socket the sampler sees belong to that namespace.
type labEnv struct {
	l       *lab.Lab
	exe     string
	urls    []string
	sinks   []*exec.Cmd
	profile string
	sysctls map[string]string
	kinds   []string
	// cpu is the CPU time of the lab's processes that exited (steps and,
	// once closed, sinks).
	cpu time.Duration
	mu  sync.Mutex
	// nat is set during a --find-limit run through a NAT lab: every step
	// then runs in every client namespace at once (runStep).
	nat *natFind
}

// addCPU adds the CPU time of an exited process.
func (e *labEnv) addCPU(cmd *exec.Cmd) {
	if cmd.ProcessState == nil {
		return
	}
	e.mu.Lock()
	e.cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	e.mu.Unlock()
}

// labSysctls returns the sysctl profile to write into the client namespace.
// "host" copies the host's live values of the relevant keys, so that a lab
// run with "host" is comparable to a run on the host.
func labSysctls(name, profilesDir string) (map[string]string, error) {
	ld, err := profiles.NewLoader(profilesDir, os.Stderr)
	if err != nil {
		return nil, &InputError{Err: err}
	}
	s, err := ld.LoadSysctl(name)
	if err != nil {
		return nil, &InputError{Err: err}
	}
	return s.Map(), nil
}

// startLab creates the namespaces and starts one sink per target in the
// server namespace. The caller closes the returned env on every path.
func startLab(ctx context.Context, cfg Config, sysctlName string, kinds []string) (*labEnv, error) {
	targets := len(kinds)
	if !lab.Privileged() {
		return nil, &InputError{Err: lab.ErrNotPermitted}
	}
	exe := cfg.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("lab: find loadcap executable: %w", err)
		}
	}
	sys, err := labSysctls(sysctlName, cfg.ProfilesDir)
	if err != nil {
		return nil, err
	}
	nat, err := labNAT(cfg)
	if err != nil {
		return nil, err
	}
	l, err := lab.Create(ctx, lab.Options{Targets: targets, Sysctls: sys, Ports: cfg.LabPorts, FirewallIdle: cfg.LabFirewallIdle, NAT: nat})
	if errors.Is(err, lab.ErrFirewallUnavailable) {
		return nil, &InputError{Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("create lab: %w", err)
	}
	e := &labEnv{l: l, exe: exe, profile: sysctlName, sysctls: sys, kinds: kinds}
	for i, a := range l.ServerAddrs {
		addr := netip.AddrPortFrom(a, labPort).String()
		pgAddr := netip.AddrPortFrom(a, labPGPort).String()
		args := []string{"sink", "--listen", addr, "--pg-listen", pgAddr, "--stats-interval", "0", "--seed", strconv.FormatInt(cfg.Gen.Seed, 10)}
		if cfg.Sink.Latency > 0 {
			args = append(args, "--sink-latency", cfg.Sink.Latency.String())
		}
		if cfg.Sink.ErrorRate > 0 {
			args = append(args, "--sink-error-rate", strconv.FormatFloat(cfg.Sink.ErrorRate, 'g', -1, 64))
		}
		cmd := l.Command(l.ServerNS, exe, args...)
		cmd.Stdout, cmd.Stderr = nil, nil
		if err := cmd.Start(); err != nil {
			e.Close()
			return nil, fmt.Errorf("lab: start sink on %s: %w", addr, err)
		}
		e.sinks = append(e.sinks, cmd)
		if kinds[i] == loadgen.KindEmbeddedPG {
			e.urls = append(e.urls, "postgres://loadcap@"+pgAddr+"/loadcap?sslmode=disable")
		} else {
			e.urls = append(e.urls, "http://"+addr+"/write?db=loadcap")
		}
	}
	// Wait until every sink accepts connections from the client namespace.
	for _, a := range l.ServerAddrs {
		for _, port := range []uint16{labPort, labPGPort} {
			addr := netip.AddrPortFrom(a, port).String()
			if err := waitListening(l.NSPath(l.ClientNS), addr, 10*time.Second); err != nil {
				e.Close()
				return nil, err
			}
		}
	}
	return e, nil
}

func waitListening(nsPath, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := lab.Do(nsPath, func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err
			}
			// Close with RST so the probe leaves no TIME_WAIT behind.
			c.(*net.TCPConn).SetLinger(0)
			return c.Close()
		})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: sink on %s did not come up: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close stops the sinks and removes the namespaces.
func (e *labEnv) Close() error {
	err := e.l.Close()
	for _, c := range e.sinks {
		if c.ProcessState == nil {
			c.Wait()
			e.addCPU(c)
		}
	}
	return err
}

// step is one load-generator run inside the lab.
type step struct {
	rate     float64
	duration time.Duration
	// pattern runs the user's --pattern instead of duration.
	pattern bool
}

// runClient re-executes loadcap in the client namespace for one step and
// returns the document it measured. SIGINT/SIGTERM to the parent (ctx)
// is passed on, so the child stops and still reports.
func (e *labEnv) runClient(ctx context.Context, cfg Config, s step) (*results.Document, error) {
	return e.runClientIn(ctx, cfg, s, e.l.ClientNS)
}

// runClientIn is runClient in the client namespace ns.
func (e *labEnv) runClientIn(ctx context.Context, cfg Config, s step, ns string) (*results.Document, error) {
	in, err := childDocument(cfg, e.urls, s)
	if err != nil {
		return nil, err
	}
	cmd := e.l.Command(ns, e.exe, "run", "--"+ChildFlag)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: start load generator: %w", err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			cmd.Process.Signal(syscall.SIGINT)
		case <-done:
		}
	}()
	werr := cmd.Wait()
	close(done)
	e.addCPU(cmd)
	var doc results.Document
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if werr != nil {
			return nil, fmt.Errorf("lab: load generator failed: %v: %s", werr, msg)
		}
		return nil, fmt.Errorf("lab: read load generator result: %w (%s)", err, msg)
	}
	return &doc, nil
}

// timeWait returns the TIME_WAIT count of the client namespace
// (/proc/net/sockstat "tw", cheap).
func (e *labEnv) timeWait() (int, error) {
	s, err := sampler.Open(sampler.Options{NetNS: e.l.NSPath(e.l.ClientNS)})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	c, err := s.Counters()
	if err != nil {
		return 0, err
	}
	return int(c.TimeWait), nil
}

// waitDrained waits until no TIME_WAIT socket is left in the client
// namespace, so the next step starts with the whole port range.
func (e *labEnv) waitDrained(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		tw, err := e.timeWait()
		if err != nil {
			return err
		}
		if tw == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: %d TIME_WAIT sockets still held after %s", tw, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// decorate records the lab's facts in a step's document.
func (e *labEnv) decorate(doc *results.Document, cfg Config) {
	doc.Config.Lab = true
	doc.Config.SysctlProfile = e.profile
	doc.Config.Targets = append([]string(nil), e.kinds...)
	doc.Notes = append(doc.Notes, fmt.Sprintf("lab %s: client namespace %s (%s), port range %d-%d; targets %s",
		e.l.ID, e.l.ClientNS, e.l.ClientAddr, e.l.PortRange[0], e.l.PortRange[1], strings.Join(e.urls, ", ")))
	if e.l.FirewallIdle > 0 {
		doc.Config.LabFirewallIdleS = e.l.FirewallIdle.Seconds()
		doc.Notes = append(doc.Notes, fmt.Sprintf("firewall: router namespace %s forwards through connection tracking and silently drops flows idle for more than %s (no RST)", e.l.RouterNS, e.l.FirewallIdle))
	}
	for k, why := range e.l.Skipped {
		doc.Notes = append(doc.Notes, fmt.Sprintf("sysctl %s not applied: %s", k, why))
	}
}

// executeLab runs cfg in a fresh lab: one run, or the --find-limit search.
func executeLab(ctx context.Context, p *plan) (*Outcome, error) {
	cfg := p.cfg
	var kinds []string
	for _, t := range p.targets {
		if t.Kind != loadgen.KindEmbedded && t.Kind != loadgen.KindEmbeddedPG {
			return nil, badInput("bad target %q with --lab: the lab hosts its own targets; use embedded or embedded-pg (one per target, e.g. --targets embedded,embedded)", t.Redacted())
		}
		kinds = append(kinds, t.Kind)
	}
	e, err := startLab(ctx, cfg, cfg.Sysctl, kinds)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	var doc *results.Document
	if cfg.LabNATPorts > 0 && cfg.FindLimit {
		doc, err = e.findLimitNAT(ctx, cfg, p)
	} else if cfg.LabNATPorts > 0 {
		doc, err = e.runNAT(ctx, cfg)
	} else if cfg.FindLimit {
		doc, err = e.findLimit(ctx, cfg, p)
	} else {
		doc, err = e.runClient(ctx, cfg, step{rate: cfg.Rate, duration: cfg.Duration, pattern: true})
		if doc != nil {
			e.decorate(doc, cfg)
		}
	}
	if doc == nil {
		return nil, err
	}
	if ctx.Err() != nil {
		doc.Interrupted = true
	}
	cerr := e.Close()
	out := &Outcome{Doc: doc, LabCPU: e.cpu}
	if cerr != nil {
		err = errors.Join(err, fmt.Errorf("remove lab: %w", cerr))
	}
	if serr := save(cfg.Out, out); serr != nil {
		return out, errors.Join(err, serr)
	}
	return out, err
}
