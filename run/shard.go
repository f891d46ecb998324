package run

import (
	"context"
	"fmt"
	"time"

	"github.com/loadcap/loadcap/fleet"
	"github.com/loadcap/loadcap/results"
)

// shardRate is the rate this process paces: the fleet's total per target
// (Config.Rate) divided by the shard count.
func (c Config) shardRate() float64 {
	if c.Shard.Count > 0 {
		return c.Shard.Rate(c.Rate)
	}
	return c.Rate
}

// validateFleet checks --shard, --start-at and --host.
func validateFleet(cfg Config, now time.Time) error {
	if cfg.Shard != (fleet.Shard{}) {
		if err := cfg.Shard.Validate(); err != nil {
			return badInput("bad --shard %s: %v", cfg.Shard, err)
		}
		if cfg.Lab {
			return badInput("--shard does not go with --lab: a lab run writes to its own sinks, so its shards would not share a target; run the shards against a real target")
		}
	}
	if !cfg.StartAt.IsZero() {
		if cfg.Lab {
			return badInput("--start-at does not go with --lab")
		}
		if err := fleet.CheckStartAt(cfg.StartAt, now, cfg.Duration); err != nil {
			return &InputError{Err: err}
		}
	}
	return nil
}

// waitStart waits until the common start time of a fleet run, if any.
// It returns at once for a start time already passed.
func waitStart(ctx context.Context, at time.Time) error {
	if at.IsZero() {
		return nil
	}
	d := time.Until(at)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for --start-at %s: interrupted before the start, nothing measured: %w", at.UTC().Format(time.RFC3339Nano), ctx.Err())
	}
}

// tagFleet records the host name override and the shard in doc.
func tagFleet(doc *results.Document, cfg Config) {
	if cfg.Host != "" {
		doc.Host = cfg.Host
	}
	if cfg.Shard.Count > 0 {
		// config.rate is what this host paced, so that every reader of one
		// shard's file compares achieved with asked rightly; the fleet's
		// total is in shard.fleet_rate (and config.rate of the merge).
		doc.Config.Rate = cfg.shardRate()
		doc.Shard = &results.Shard{Index: cfg.Shard.Index, Count: cfg.Shard.Count, FleetRate: cfg.Rate}
	}
	if !cfg.StartAt.IsZero() {
		at := cfg.StartAt.UTC()
		if doc.Shard != nil {
			doc.Shard.StartAt = &at
		}
		if late := doc.StartedAt.Sub(at); late > 100*time.Millisecond {
			doc.Notes = append(doc.Notes, fmt.Sprintf("started %d ms after --start-at %s (it had passed when the run began)", late.Milliseconds(), at.Format(time.RFC3339Nano)))
		}
	}
}
