package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/fleet"
	"github.com/loadcap/loadcap/run"
)

// fleetFlags reads --shard (or JOB_COMPLETION_INDEX and LOADCAP_SHARDS),
// --start-at and --host into cfg.
func fleetFlags(c *cli.Context, cfg *run.Config) error {
	if v := c.String("shard"); v != "" {
		s, err := fleet.ParseShard(v)
		if err != nil {
			return badInput("%v", err)
		}
		cfg.Shard = s
	} else {
		s, ok, err := fleet.ShardFromEnv(os.LookupEnv)
		if err != nil {
			return badInput("%v", err)
		}
		if ok {
			cfg.Shard = s
		}
	}
	if v := c.String("start-at"); v != "" {
		t, err := fleet.ParseStartAt(v)
		if err != nil {
			return badInput("%v", err)
		}
		cfg.StartAt = t
	}
	cfg.Host = c.String("host")
	return nil
}
