package run

import (
	"context"
	"fmt"
	"time"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/embedded"
	"github.com/loadcap/loadcap/loadgen/pg"
)

// checkTarget checks what can be checked of a target without connecting:
// the table= and mode= of a postgres:// URL.
func checkTarget(t loadgen.TargetSpec) error {
	if t.Kind == loadgen.KindPostgres {
		if _, err := pg.ParseTarget(t); err != nil {
			return err
		}
	}
	return nil
}

// checkTLS makes one TLS handshake with an https target, on a dialer of
// its own shaped like the run's (its connection is not counted).
func checkTLS(ctx context.Context, t loadgen.TargetSpec, p *plan) error {
	if !t.TLS {
		return nil
	}
	timeout := p.cfg.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	dl, err := loadgen.NewDialer(p.client, timeout)
	if err != nil {
		return err
	}
	return loadgen.CheckTLS(ctx, t, p.tls, dl, timeout)
}

// openTargets starts the embedded sinks the targets ask for and opens one
// driver per target. closeAll closes drivers and sinks; it is never nil.
// Errors that come from the user's input are InputErrors.
func openTargets(ctx context.Context, p *plan) (targets []loadgen.Target, closeAll func(), err error) {
	var closers []func()
	closeAll = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	cfg := p.cfg
	opts := loadgen.DriverOptions{Batch: cfg.Batch, Gzip: cfg.Gzip, Timeout: cfg.Timeout, TLSConfig: p.tls}
	for i := range p.targets {
		t := &p.targets[i]
		if t.Kind == loadgen.KindEmbedded || t.Kind == loadgen.KindEmbeddedPG {
			// One sink per "embedded" or "embedded-pg" entry, each on its
			// own free loopback port, so a dual-write to two embedded
			// targets is two servers.
			what := map[string]string{loadgen.KindEmbedded: "embedded sink", loadgen.KindEmbeddedPG: "embedded PostgreSQL sink"}[t.Kind]
			s, err := embedded.Start(t.Kind, cfg.sinkAddr(), cfg.Sink)
			if err != nil {
				return nil, closeAll, fmt.Errorf("start %s: %w", what, err)
			}
			closers = append(closers, func() { s.Close() })
			spec, err := loadgen.ParseTarget(s.Target())
			if err != nil {
				return nil, closeAll, fmt.Errorf("start %s: %w", what, err)
			}
			spec.Name, spec.Kind = t.Name, t.Kind
			*t = spec
		}
		var d loadgen.Driver
		switch t.Kind {
		case loadgen.KindEmbedded, loadgen.KindInfluxV1, loadgen.KindInfluxV2, loadgen.KindInfluxV3:
			// A certificate problem stops the run before any load, in
			// one line, instead of failing every write.
			if err = checkTLS(ctx, *t, p); err == nil {
				d, err = loadgen.NewHTTPDriver(*t, p.client, p.gen, opts)
			}
		case loadgen.KindPostgres, loadgen.KindEmbeddedPG:
			// Connects once and checks the table before any load is sent.
			d, err = pg.NewDriver(ctx, *t, p.client, p.gen, pg.Options{
				Batch: cfg.Batch, Timeout: cfg.Timeout, Mode: cfg.SQLMode, Create: !cfg.SQLNoCreate,
			})
		default:
			err = fmt.Errorf("unsupported target kind %s", t.Kind)
		}
		if err != nil {
			return nil, closeAll, &InputError{Err: fmt.Errorf("target %s: %w", t.Name, err)}
		}
		closers = append(closers, func() { d.Close() })
		targets = append(targets, loadgen.Target{Name: t.Name, Driver: d})
	}
	return targets, closeAll, nil
}
