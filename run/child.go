package run

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/loadcap/loadcap/loadgen"
)

// ChildFlag is the hidden `loadcap run` flag of the load generator a lab
// starts in a namespace: its configuration comes as a JSON document on
// standard input (ReadChildConfig), its result document goes to standard
// output. A document, not the user's flags re-encoded, so a field added to
// a lab step cannot be lost between the two processes.
const ChildFlag = "lab-child"

// childConfig is the document a lab hands its load generator: one step of
// the user's workload, pointed at the lab's sinks, with the namespace's own
// sysctls (the lab applied the profile; the child reads them as "host").
type childConfig struct {
	Targets        []string          `json:"targets"`
	Rate           float64           `json:"rate"`
	Duration       time.Duration     `json:"duration_ns"`
	Pattern        string            `json:"pattern,omitempty"`
	Batch          int               `json:"batch"`
	Client         string            `json:"client"`
	DialMode       string            `json:"dial_mode,omitempty"`
	Linger0        bool              `json:"linger0,omitempty"`
	ProfilesDir    string            `json:"profiles_dir,omitempty"`
	Gen            loadgen.GenConfig `json:"gen"`
	Gzip           bool              `json:"gzip,omitempty"`
	SQLMode        string            `json:"sql_mode,omitempty"`
	Workers        int               `json:"workers,omitempty"`
	MaxWorkers     int               `json:"max_workers,omitempty"`
	Timeout        time.Duration     `json:"timeout_ns,omitempty"`
	SampleInterval time.Duration     `json:"sample_interval_ns,omitempty"`
}

// childDocument is the configuration document of one lab step.
func childDocument(cfg Config, urls []string, s step) ([]byte, error) {
	c := childConfig{
		Targets: urls, Rate: s.rate, Duration: s.duration, Batch: cfg.Batch,
		Client: cfg.Client, DialMode: cfg.DialMode, Linger0: cfg.Linger0, ProfilesDir: cfg.ProfilesDir,
		Gen: cfg.Gen, Gzip: cfg.Gzip, SQLMode: cfg.SQLMode,
		Workers: cfg.Workers, MaxWorkers: cfg.MaxWorkers, Timeout: cfg.Timeout, SampleInterval: cfg.SampleInterval,
	}
	if s.pattern {
		c.Pattern = cfg.Pattern
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("lab: encode load generator config: %w", err)
	}
	return b, nil
}

// ReadChildConfig reads the configuration document a lab wrote to its load
// generator's standard input (see ChildFlag). Unknown fields are refused,
// so a parent and child of different versions fail loudly.
func ReadChildConfig(r io.Reader, version string) (Config, error) {
	var c childConfig
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("read lab child config: %w", err)
	}
	return Config{
		Targets: c.Targets, Rate: c.Rate, Duration: c.Duration, DurationSet: true, Pattern: c.Pattern,
		Batch: c.Batch, Client: c.Client, DialMode: c.DialMode, Linger0: c.Linger0, ProfilesDir: c.ProfilesDir,
		Sysctl: "host", Gen: c.Gen, PrecisionSet: true, Gzip: c.Gzip, SQLMode: c.SQLMode,
		Workers: c.Workers, MaxWorkers: c.MaxWorkers, Timeout: c.Timeout, SampleInterval: c.SampleInterval,
		Version: version,
	}, nil
}
