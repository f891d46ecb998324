package run

import (
	"context"
	"fmt"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/sink"
)

// checkTarget refuses target kinds this build cannot drive.
func checkTarget(t loadgen.TargetSpec) error {
	switch t.Kind {
	case loadgen.KindPostgres, loadgen.KindEmbeddedPG:
		return fmt.Errorf("bad target %q: SQL targets are not supported by this build yet", t.Redacted())
	}
	return nil
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
	opts := loadgen.DriverOptions{Batch: cfg.Batch, Gzip: cfg.Gzip, Timeout: cfg.Timeout}
	for i := range p.targets {
		t := &p.targets[i]
		if t.Kind == loadgen.KindEmbedded {
			// One sink per "embedded" entry, each on its own free loopback
			// port, so a dual-write to two embedded targets is two servers.
			s, err := sink.Start(cfg.sinkAddr(), cfg.Sink)
			if err != nil {
				return nil, closeAll, fmt.Errorf("start embedded sink: %w", err)
			}
			closers = append(closers, func() { s.Close() })
			spec, err := loadgen.ParseTarget(s.URL() + "/write?db=loadcap")
			if err != nil {
				return nil, closeAll, fmt.Errorf("start embedded sink: %w", err)
			}
			spec.Name, spec.Kind = t.Name, loadgen.KindEmbedded
			*t = spec
		}
		var d loadgen.Driver
		switch t.Kind {
		case loadgen.KindEmbedded, loadgen.KindInfluxV1, loadgen.KindInfluxV2, loadgen.KindInfluxV3:
			d, err = loadgen.NewHTTPDriver(*t, p.client, p.gen, opts)
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
