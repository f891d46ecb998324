package profiles

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultDir is the user profiles directory loadcap uses when none is named
// and a directory of that name exists in the working directory.
const DefaultDir = "profiles.d"

// DirEnv is the environment variable naming the user profiles directory
// (the --profiles-dir flag of the commands that take profiles).
const DirEnv = "LOADCAP_PROFILES_DIR"

// Kinds of profile.
const (
	KindClient = "client"
	KindSysctl = "sysctl"
)

// Extensions of profile files: client profiles are TOML, sysctl profiles
// sysctl.d files.
const (
	ClientExt = ".toml"
	SysctlExt = ".conf"
)

// SourceBuiltin is the Source of a built-in profile in List.
const SourceBuiltin = "builtin"

// Loader finds profiles by name or path. A bare name (no path separator, no
// .toml or .conf extension) is looked up in this order: a built-in profile,
// then NAME.toml (client) or NAME.conf (sysctl) in Dir, then a file of that
// name in the working directory. Anything else is a file path. A built-in
// always wins over a file of the same name in Dir: the file is shadowed
// (List marks it, loading the name warns) and loads by its path.
type Loader struct {
	// Dir is the user profiles directory; "" for none.
	Dir string
	// ProcSys is the sysctl tree ("/proc/sys") that the keys of sysctl
	// profile files are checked against: a key it lacks is reported on
	// Warn. "" turns the check off.
	ProcSys string
	// Warn receives warnings, one line each: a key the kernel lacks, a
	// shadowed file. nil discards them.
	Warn io.Writer
}

// NewLoader returns a Loader of the profiles directory dir, checking /proc/sys
// and writing warnings to warn. An empty dir means $LOADCAP_PROFILES_DIR, or
// else DefaultDir when it is a directory, or else none. A directory named by
// dir or by the environment must exist.
func NewLoader(dir string, warn io.Writer) (Loader, error) {
	l := Loader{ProcSys: "/proc/sys", Warn: warn}
	if dir == "" {
		dir = os.Getenv(DirEnv)
	}
	if dir == "" {
		if st, err := os.Stat(DefaultDir); err == nil && st.IsDir() {
			l.Dir = DefaultDir
		}
		return l, nil
	}
	if err := checkDir(dir); err != nil {
		return l, err
	}
	l.Dir = dir
	return l, nil
}

func checkDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("profiles directory %s: no such directory", dir)
		}
		return fmt.Errorf("profiles directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("profiles directory %s: not a directory", dir)
	}
	return nil
}

// DefaultLoader is the Loader of the package-level LoadClient and
// LoadSysctl: the directory of $LOADCAP_PROFILES_DIR (or ./profiles.d when
// it exists), keys checked against /proc/sys, warnings on standard error. A
// directory named by the environment that does not exist is reported when a
// name is looked up in it.
func DefaultLoader() Loader {
	l, err := NewLoader("", os.Stderr)
	if err != nil {
		l.Dir = os.Getenv(DirEnv)
	}
	return l
}

// LoadClient loads a built-in client profile by name, a NAME.toml of the
// profiles directory (see DefaultLoader), or a TOML file by path. Decoding is
// strict: an unknown key is an error. Errors name the file, the line where
// known, and the key.
func LoadClient(nameOrPath string) (*Client, error) { return DefaultLoader().LoadClient(nameOrPath) }

// LoadSysctl loads a built-in sysctl profile by name ("host" reads
// /proc/sys), a NAME.conf of the profiles directory (see DefaultLoader), or a
// sysctl.d file by path. Errors name the file, line and key; keys the
// running kernel lacks are warned about on standard error.
func LoadSysctl(nameOrPath string) (*Sysctl, error) { return DefaultLoader().LoadSysctl(nameOrPath) }

// LoadClient loads a client profile by name or path (see Loader).
func (l Loader) LoadClient(nameOrPath string) (*Client, error) {
	data, file, name, err := l.read(KindClient, nameOrPath)
	if err != nil {
		return nil, err
	}
	return ParseClient(file, name, data)
}

// LoadSysctl loads a sysctl profile by name or path (see Loader); "host"
// reads the live values of /proc/sys. When ProcSys is set, every key of a
// file that the kernel lacks is reported on Warn (see Sysctl.AbsentKeys).
func (l Loader) LoadSysctl(nameOrPath string) (*Sysctl, error) {
	if nameOrPath == HostProfile {
		return loadHost()
	}
	data, file, name, err := l.read(KindSysctl, nameOrPath)
	if err != nil {
		return nil, err
	}
	s, err := ParseSysctl(file, name, data)
	if err != nil {
		return nil, err
	}
	if l.ProcSys != "" && l.Warn != nil {
		for _, w := range s.AbsentKeys(l.ProcSys) {
			fmt.Fprintf(l.Warn, "loadcap: warning: %v\n", w)
		}
	}
	return s, nil
}

func kindDirExt(kind string) (dir, ext string) {
	if kind == KindClient {
		return "builtin/client", ClientExt
	}
	return "builtin/sysctl", SysctlExt
}

func builtinNamesOf(kind string) []string {
	if kind == KindClient {
		return ClientNames()
	}
	return SysctlNames()
}

// read returns the content, display file and name of a profile of kind.
func (l Loader) read(kind, nameOrPath string) (data []byte, file, name string, err error) {
	bdir, ext := kindDirExt(kind)
	names := builtinNamesOf(kind)
	if nameOrPath == "" {
		return nil, "", "", fmt.Errorf("load %s profile: empty name (built-ins: %s)", kind, strings.Join(names, ", "))
	}
	isPath := strings.ContainsRune(nameOrPath, os.PathSeparator) || strings.HasSuffix(nameOrPath, ext)
	if !isPath {
		if b, err := builtinFS.ReadFile(path.Join(bdir, nameOrPath+ext)); err == nil {
			if l.Dir != "" && l.Warn != nil {
				if f := filepath.Join(l.Dir, nameOrPath+ext); fileExists(f) {
					fmt.Fprintf(l.Warn, "loadcap: warning: %s is shadowed by the built-in %s profile %q (built-ins win): rename it, or pass its path\n", f, kind, nameOrPath)
				}
			}
			return b, path.Join(bdir, nameOrPath+ext), nameOrPath, nil
		}
		if l.Dir != "" {
			if err := checkDir(l.Dir); err != nil {
				return nil, "", "", fmt.Errorf("load %s profile %q: %w", kind, nameOrPath, err)
			}
			f := filepath.Join(l.Dir, nameOrPath+ext)
			b, err := os.ReadFile(f)
			if err == nil {
				return b, f, nameOrPath, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, "", "", fmt.Errorf("load %s profile: %w", kind, err)
			}
		}
	}
	b, err := os.ReadFile(nameOrPath)
	if err != nil {
		if !isPath && errors.Is(err, fs.ErrNotExist) {
			where := ""
			if l.Dir != "" {
				where = fmt.Sprintf(", not in %s", l.Dir)
			}
			return nil, "", "", fmt.Errorf("load %s profile %q: not a built-in (%s)%s and no such file", kind, nameOrPath, strings.Join(names, ", "), where)
		}
		return nil, "", "", fmt.Errorf("load %s profile: %w", kind, err)
	}
	return b, nameOrPath, strings.TrimSuffix(filepath.Base(nameOrPath), filepath.Ext(nameOrPath)), nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// Listed is one profile in List: a built-in or a file of the profiles
// directory.
type Listed struct {
	// Kind is KindClient or KindSysctl.
	Kind string `json:"kind"`
	// Name is what --client or --sysctl takes.
	Name string `json:"name"`
	// Source is SourceBuiltin or the file in the profiles directory.
	Source string `json:"source"`
	// Shadowed marks a file whose name is a built-in's: the built-in wins,
	// the file loads by its path only.
	Shadowed bool `json:"shadowed,omitempty"`
}

// List returns the built-in profiles and the files of Dir (NAME.toml client
// profiles, NAME.conf sysctl profiles; other files are ignored), client
// profiles first, each kind sorted by name, a shadowed file right after the
// built-in that shadows it. It does not parse the files.
func (l Loader) List() ([]Listed, error) {
	var out []Listed
	user := map[string][]string{}
	if l.Dir != "" {
		if err := checkDir(l.Dir); err != nil {
			return nil, fmt.Errorf("list profiles: %w", err)
		}
		ents, err := os.ReadDir(l.Dir)
		if err != nil {
			return nil, fmt.Errorf("list profiles: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			for _, kind := range []string{KindClient, KindSysctl} {
				if _, ext := kindDirExt(kind); strings.HasSuffix(e.Name(), ext) && len(e.Name()) > len(ext) {
					user[kind] = append(user[kind], strings.TrimSuffix(e.Name(), ext))
				}
			}
		}
	}
	for _, kind := range []string{KindClient, KindSysctl} {
		_, ext := kindDirExt(kind)
		builtins := builtinNamesOf(kind)
		all := slices.Sorted(slices.Values(append(slices.Clone(builtins), user[kind]...)))
		all = slices.Compact(all)
		for _, n := range all {
			if slices.Contains(builtins, n) {
				out = append(out, Listed{Kind: kind, Name: n, Source: SourceBuiltin})
			}
			if slices.Contains(user[kind], n) {
				out = append(out, Listed{Kind: kind, Name: n, Source: filepath.Join(l.Dir, n+ext), Shadowed: slices.Contains(builtins, n)})
			}
		}
	}
	return out, nil
}

// Names returns the names of the profiles of kind that a bare name reaches:
// the built-ins and the unshadowed files of Dir, sorted.
func (l Loader) Names(kind string) ([]string, error) {
	ls, err := l.List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range ls {
		if p.Kind == kind && !p.Shadowed {
			out = append(out, p.Name)
		}
	}
	return out, nil
}
