package run

import (
	"github.com/loadcap/loadcap/export"
	"github.com/loadcap/loadcap/loadgen"
)

// checkExports refuses export flags that cannot be honoured, before any
// traffic is sent.
func checkExports(cfg Config) error {
	if cfg.HDRLog == "" && cfg.VegetaResults == "" {
		return nil
	}
	if cfg.Lab {
		return badInput("--hdr-log and --vegeta-results are not supported with --lab: the load generator runs in the lab's namespace (run without --lab, or compare the lab's result files)")
	}
	if cfg.HDRLog != "" && cfg.HDRLog == cfg.VegetaResults {
		return badInput("bad --hdr-log/--vegeta-results %q: both exports would write the same file", cfg.HDRLog)
	}
	return nil
}

// openExports creates the export files of cfg; a file that cannot be
// created is an InputError (nothing was sent yet).
func openExports(cfg Config, targets []loadgen.TargetSpec) (*export.Set, error) {
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.Name
	}
	s, err := export.Open(export.Options{HDRLog: cfg.HDRLog, VegetaResults: cfg.VegetaResults}, names)
	if err != nil {
		return nil, &InputError{Err: err}
	}
	return s, nil
}
