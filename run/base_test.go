package run_test

import (
	"testing"
	"time"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/run"
)

func baseConfig(t *testing.T) run.Config {
	return run.Config{
		Targets: []string{"embedded"}, Rate: 200, Duration: 2 * time.Second, Batch: 10,
		Client: "keepalive", Sysctl: "host", Gen: loadgen.DefaultGenConfig(), Out: t.TempDir(),
		Timeout: 5 * time.Second, Version: "test",
	}
}
