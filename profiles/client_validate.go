package profiles

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

//go:embed builtin/client/*.toml builtin/sysctl/*.conf
var builtinFS embed.FS

// Validate checks the profile's values and returns a *FieldError naming the
// first bad key, or nil.
func (c *Client) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	switch c.Conn {
	case ConnPool, ConnPerWrite:
	case "":
		return bad("conn", "missing: want %q or %q", ConnPool, ConnPerWrite)
	default:
		return bad("conn", "%q: want %q or %q", c.Conn, ConnPool, ConnPerWrite)
	}
	switch c.DialMode {
	case DialConnect, DialBind, DialBindNoPort, "":
	default:
		return bad("dial_mode", "%q: want %q, %q or %q", c.DialMode, DialConnect, DialBind, DialBindNoPort)
	}
	switch c.Closer {
	case CloserClient, CloserServer:
	case "":
		if c.Conn == ConnPerWrite {
			return bad("closer", "missing: a per-write profile must say who closes first, %q or %q", CloserClient, CloserServer)
		}
	default:
		return bad("closer", "%q: want %q or %q", c.Closer, CloserClient, CloserServer)
	}
	if c.PoolSize < 0 {
		return bad("pool_size", "%d is negative (0 means unlimited)", c.PoolSize)
	}
	if c.IdleSize < 0 {
		return bad("idle_size", "%d is negative", c.IdleSize)
	}
	if c.Conn == ConnPool {
		if c.PoolSize > 0 && c.IdleSize > c.PoolSize {
			return bad("idle_size", "%d is above pool_size %d", c.IdleSize, c.PoolSize)
		}
	} else {
		for _, f := range []setField{{"pool_size", c.PoolSize != 0}, {"idle_size", c.IdleSize != 0},
			{"idle_timeout", c.IdleTimeout != 0}, {"heartbeat", c.Heartbeat != 0}} {
			if f.set {
				return bad(f.key, "only applies to conn = %q", ConnPool)
			}
		}
	}
	if c.KeepAliveCount < 0 {
		return bad("keepalive_count", "%d is negative", c.KeepAliveCount)
	}
	if !c.KeepAlive {
		for _, f := range []setField{{"keepalive_idle", c.KeepAliveIdle != 0},
			{"keepalive_interval", c.KeepAliveInterval != 0}, {"keepalive_count", c.KeepAliveCount != 0}} {
			if f.set {
				return bad(f.key, "set without keepalive = true")
			}
		}
	}
	return nil
}

type setField struct {
	key string
	set bool
}

// DialModeOrDefault returns DialMode, or DialConnect when it is empty.
func (c *Client) DialModeOrDefault() string {
	if c.DialMode == "" {
		return DialConnect
	}
	return c.DialMode
}

// ClientNames returns the names of the built-in client profiles, sorted.
func ClientNames() []string { return builtinNames("builtin/client", ".toml") }

// SysctlNames returns the names of the built-in sysctl profiles, sorted,
// including "host" (the live values of the current network namespace).
func SysctlNames() []string {
	return slices.Sorted(slices.Values(append(builtinNames("builtin/sysctl", ".conf"), HostProfile)))
}

func builtinNames(dir, ext string) []string {
	ents, err := fs.ReadDir(builtinFS, dir)
	if err != nil {
		panic(err) // embedded at build time
	}
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ext); ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// ParseClient decodes and validates a client profile from data; file names it
// in errors and name is used when the profile sets none.
func ParseClient(file, name string, data []byte) (*Client, error) {
	var c Client
	if err := DecodeTOML(file, data, &c); err != nil {
		return nil, fmt.Errorf("load client profile %w", err)
	}
	if c.Name == "" {
		c.Name = name
	}
	if err := c.Validate(); err != nil {
		var fe *FieldError
		line := 0
		if errors.As(err, &fe) {
			line = keyLine(data, toml.Key{fe.Key})
		}
		return nil, fmt.Errorf("load client profile %w", &FileError{File: file, Line: line, Err: err})
	}
	return &c, nil
}

// DecodeTOML decodes data, the TOML file named file, into v strictly: a
// syntax error, a value of the wrong type and a key v has no place for
// (unknown key) each give a *FileError naming the file, the line and the key.
func DecodeTOML(file string, data []byte, v any) error {
	wrap := func(line int, key string, err error) error {
		return &FileError{File: file, Line: line, Key: key, Err: err}
	}
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(v)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			key := pe.LastKey
			msg := pe.Message
			if key != "" {
				return wrap(pe.Position.Line, key, &FieldError{Key: key, Msg: msg})
			}
			return wrap(pe.Position.Line, "", errors.New(msg))
		}
		if m := tomlErrRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			if line == 0 {
				line = keyLine(data, strings.Split(m[2], "."))
			}
			return wrap(line, "", &FieldError{Key: m[2], Msg: m[3]})
		}
		return wrap(0, "", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0].String()
		return wrap(keyLine(data, und[0]), k, &FieldError{Key: k, Msg: "unknown key"})
	}
	return nil
}

// tomlErrRE matches the decoder's type errors, which are not ParseErrors:
// `toml: line 2 (last key "pool_size"): incompatible types: ...`.
var tomlErrRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]+)"\): (.*)$`)

// keyLine finds the line defining a TOML key (its last piece, under its table
// when nested), or 0.
func keyLine(data []byte, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	last := regexp.QuoteMeta(key[len(key)-1])
	re := regexp.MustCompile(`^\s*(?:` + last + `|"` + last + `"|'` + last + `')\s*[=.]`)
	table := ""
	for i, l := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") {
			table = strings.Trim(t, "[] ")
			if table == strings.Join(key, ".") {
				return i + 1
			}
			continue
		}
		if re.MatchString(l) && (len(key) == 1 || table == strings.Join(key[:len(key)-1], ".")) {
			return i + 1
		}
	}
	return 0
}

// TOMLKeyLine returns the line of data, a TOML file, that defines key (a
// dotted path as pieces: "targets", "primary"), or 0 when it cannot tell.
func TOMLKeyLine(data []byte, key ...string) int { return keyLine(data, toml.Key(key)) }
