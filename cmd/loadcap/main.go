// Command loadcap drives database write workloads, samples the client's TCP
// socket states and computes the write rate at which the ephemeral port range
// runs out. See README.md and SPEC.md.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	app := &cli.App{
		Name:            "loadcap",
		Usage:           "write-path load generator and ephemeral-port capacity benchmark",
		Version:         version,
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
		Commands: []*cli.Command{
			// each command lives in its own file as xxxCommand()
			runCommand(),
			sampleCommand(),
			capacityCommand(),
			profilesCommand(),
			compareCommand(),
			reportCommand(),
			resultsCommand(),
			mergeCommand(),
			labCommand(),
			sinkCommand(),
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "loadcap:", err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(2)
	}
}

// badInput returns an error that exits with status 2 (bad flags, URLs, files).
func badInput(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), 2)
}
