// Command loadcap drives database write workloads, samples the client's TCP
// socket states and computes the write rate at which the ephemeral port range
// runs out. See README.md and docs/.
package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/lab"
	"github.com/loadcap/loadcap/results"
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
	strictUsage(app)
	err := app.Run(os.Args)
	if err != nil && !aborting.Load() {
		fmt.Fprintln(os.Stderr, "loadcap:", err)
	}
	exit(exitCode(err))
}

// exitCode is the exit status for the error app.Run returned.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 2
}

// outputError is the exit of a failed output file: status 2 when the path
// was wrong (its directory missing), 1 when the write itself failed.
func outputError(err error) error {
	var pe *results.OutputPathError
	if errors.As(err, &pe) {
		return cli.Exit(err.Error(), 2)
	}
	return cli.Exit(err.Error(), 1)
}

// badInput returns an error that exits with status 2 (bad flags, URLs, files).
func badInput(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), 2)
}

// strictUsage makes every usage error of every command (a flag value that
// does not parse, a bad LOADCAP_* variable, an unknown flag, command or
// subcommand) one line naming the flag and the value, with exit status 2
// and no usage dump: urfave/cli would print the command's help on stdout.
func strictUsage(app *cli.App) {
	app.OnUsageError = usageError("loadcap", app.Flags)
	app.Action = unknownCommand("loadcap")
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			full := path + " " + c.Name
			if c.OnUsageError == nil {
				c.OnUsageError = usageError(full, c.Flags)
			}
			if len(c.Subcommands) > 0 {
				if c.Action == nil {
					c.Action = unknownCommand(full)
				}
				walk(full, c.Subcommands)
			}
		}
	}
	walk("loadcap", app.Commands)
}

// unknownCommand is the action of a command that only has subcommands
// (or of the app): without arguments it shows the help, as urfave/cli
// does, and so does `loadcap help [COMMAND]`; an argument that names no
// command is bad input.
func unknownCommand(path string) cli.ActionFunc {
	return func(c *cli.Context) error {
		args := c.Args()
		switch {
		case !args.Present() && path == "loadcap":
			return cli.ShowAppHelp(c)
		case !args.Present():
			return cli.ShowSubcommandHelp(c)
		case path == "loadcap" && (args.First() == "help" || args.First() == "h") && args.Len() <= 2:
			if args.Len() == 1 {
				return cli.ShowAppHelp(c)
			}
			if c.App.Command(args.Get(1)) != nil {
				return cli.ShowCommandHelp(c, args.Get(1))
			}
			return badInput("unknown command %q for %s (%s --help lists them)", args.Get(1), path, path)
		}
		return badInput("unknown command %q for %s (%s --help lists them)", args.First(), path, path)
	}
}

// The errors of Go's flag package and of urfave/cli's LOADCAP_* parsing.
var (
	badValueRe  = regexp.MustCompile(`^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-(\S+): (.*)$`)
	badEnvRe    = regexp.MustCompile(`^could not parse ("(?:[^"\\]|\\.)*") (?:as [a-z0-9 ]+ value )?from (.+?) (?:as value )?for flag (\S+): (.*)$`)
	undefinedRe = regexp.MustCompile(`^flag provided but not defined: -(.*)$`)
	needsArgRe  = regexp.MustCompile(`^flag needs an argument: -(.*)$`)
	badSyntaxRe = regexp.MustCompile(`^bad flag syntax: (.*)$`)
)

// usageError returns the OnUsageError of a command: err, a flag that did
// not parse, becomes one line naming the flag and the value, exit status 2.
func usageError(path string, flags []cli.Flag) cli.OnUsageErrorFunc {
	return func(_ *cli.Context, err error, _ bool) error {
		msg := err.Error()
		if m := badValueRe.FindStringSubmatch(msg); m != nil {
			return badInput("bad %s %s: %s", dashed(m[2]), m[1], want(flags, m[2], m[3]))
		}
		if m := badEnvRe.FindStringSubmatch(msg); m != nil {
			return badInput("bad %s %s (for %s): %s", source(m[2]), m[1], dashed(m[3]), want(flags, m[3], m[4]))
		}
		if m := undefinedRe.FindStringSubmatch(msg); m != nil {
			return badInput("unknown flag %s for %s (%s --help lists the flags)", dashed(m[1]), path, path)
		}
		if m := needsArgRe.FindStringSubmatch(msg); m != nil {
			return badInput("flag %s of %s needs a value", dashed(m[1]), path)
		}
		if m := badSyntaxRe.FindStringSubmatch(msg); m != nil {
			return badInput("bad flag syntax %q for %s", m[1], path)
		}
		return badInput("%s: %s", path, strings.Join(strings.Fields(msg), " "))
	}
}

// source names where urfave/cli read a value: LOADCAP_DURATION for
// `environment variable "LOADCAP_DURATION"`, else as it says.
func source(s string) string {
	if v, ok := strings.CutPrefix(s, "environment variable "); ok {
		if name, err := strconv.Unquote(v); err == nil {
			return name
		}
		return v
	}
	return s
}

// dashed spells a flag as the user would: -o, --duration.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// want says what the flag called name accepts, from its type; reason is
// the parser's own (used when the type says nothing more useful).
func want(flags []cli.Flag, name, reason string) string {
	if strings.Contains(reason, "out of range") {
		return "out of range"
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			switch f.(type) {
			case *cli.DurationFlag:
				return "want a duration such as 30s or 1m30s"
			case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag:
				return "want a whole number"
			case *cli.Float64Flag:
				return "want a number"
			case *cli.BoolFlag:
				return "want true or false"
			}
		}
	}
	return reason
}

// aborting is set once a second signal has begun tearing the process down.
var aborting atomic.Bool

// abortLimit bounds how long abort spends removing labs before it exits.
const abortLimit = 10 * time.Second

// abort is a second SIGINT or SIGTERM: exit with status 130 now, without
// draining or saving, but never leave a lab behind. The labs this process
// owns are removed by their own ids: the processes in their namespaces are
// killed by pid, the namespaces and any veth left in the host deleted, the
// owner files removed.
func abort() {
	aborting.Store(true)
	fmt.Fprintln(os.Stderr, "loadcap: interrupted again: quitting now without saving")
	if _, err := lab.RemoveOwned(os.Getpid(), abortLimit); err != nil {
		fmt.Fprintln(os.Stderr, "loadcap: remove lab (loadcap lab cleanup removes what is left):", err)
	}
	os.Exit(130)
}

// exit ends the process with code, unless a second signal is tearing it
// down: then the labs are being removed and abort exits with 130 (the run,
// whose load generator abort killed, must not exit first).
func exit(code int) {
	if aborting.Load() {
		time.Sleep(abortLimit + 5*time.Second)
		code = 130
	}
	os.Exit(code)
}
