package run

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"sort"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/profiles"
)

// DefaultConfigFile is the config file loadcap reads from the working
// directory when it exists and no --config names another.
const DefaultConfigFile = "loadcap.toml"

// configFile is the content of loadcap.toml: target URLs by name, so that
// `--targets primary,backup` stands for two long URLs.
//
//	[targets]
//	primary = "http://influx-a:8086/write?db=metrics"
//	backup  = "postgres://loadcap@pg-b:5432/metrics?table=points&mode=copy"
type configFile struct {
	Targets map[string]string `toml:"targets"`
}

// targetNameRE is what a target name may look like: it must not be read as
// a URL or as one of the built-in target kinds.
var targetNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,62}$`)

// LoadConfigFile reads the config file at path and returns the target names
// it defines. An empty path means DefaultConfigFile when the working
// directory has one, and otherwise no config file (nil, nil). A path given
// explicitly must exist. Every target URL is checked here, so a bad one is
// reported as FILE:LINE: key "targets.NAME": ... before anything runs.
func LoadConfigFile(path string) (*loadgen.TargetNames, error) {
	explicit := path != ""
	if !explicit {
		path = DefaultConfigFile
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, &InputError{Err: fmt.Errorf("load config file: %w", err)}
	}
	var cf configFile
	if err := profiles.DecodeTOML(path, data, &cf); err != nil {
		return nil, &InputError{Err: fmt.Errorf("load config file %w", err)}
	}
	names := make([]string, 0, len(cf.Targets))
	for n := range cf.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		bad := func(err error) error {
			return &InputError{Err: fmt.Errorf("load config file %w", &profiles.FileError{
				File: path, Line: profiles.TOMLKeyLine(data, "targets", n), Key: "targets." + n, Err: err})}
		}
		switch {
		case !targetNameRE.MatchString(n):
			return nil, bad(fmt.Errorf("bad target name %q: want a letter, then letters, digits, '_', '.' or '-'", n))
		case n == loadgen.KindEmbedded || n == loadgen.KindEmbeddedPG:
			return nil, bad(fmt.Errorf("bad target name %q: that is a built-in target", n))
		}
		if _, err := loadgen.ParseTarget(cf.Targets[n]); err != nil {
			return nil, bad(err)
		}
	}
	return &loadgen.TargetNames{Source: path, URLs: cf.Targets}, nil
}
