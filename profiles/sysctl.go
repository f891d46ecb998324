package profiles

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// HostProfile is the name of the sysctl profile read live from /proc/sys of
// the current network namespace.
const HostProfile = "host"

// RelevantKeys are the sysctls that matter for a client's port budget and idle
// connections, plus the unrelated ones incident 1 changed. ReadSysctls("/proc/sys",
// RelevantKeys) is the "host" profile.
var RelevantKeys = []string{
	"net.ipv4.ip_local_port_range",
	"net.ipv4.ip_local_reserved_ports",
	"net.ipv4.tcp_tw_reuse",
	"net.ipv4.tcp_tw_reuse_delay",
	"net.ipv4.tcp_timestamps",
	"net.ipv4.tcp_max_tw_buckets",
	"net.ipv4.tcp_fin_timeout",
	"net.ipv4.tcp_keepalive_time",
	"net.ipv4.tcp_keepalive_intvl",
	"net.ipv4.tcp_keepalive_probes",
	"net.ipv4.tcp_syncookies",
	"net.ipv4.ip_forward",
}

// Entry is one "key = value" line of a sysctl profile.
type Entry struct {
	// Key is the sysctl name in dotted form ("net.ipv4.tcp_tw_reuse").
	Key string `json:"key"`
	// Value is the value, surrounding space trimmed and inner runs of
	// whitespace collapsed to one space.
	Value string `json:"value"`
	// Line is the 1-based line in the file, 0 for values read live.
	Line int `json:"line,omitempty"`
	// IgnoreErrors is set by a leading "-": as in sysctl.d, failing to set
	// the key (for example because it does not exist) is not an error.
	IgnoreErrors bool `json:"ignore_errors,omitempty"`
}

// Sysctl is a sysctl profile: a sysctl.d file or the live host values.
type Sysctl struct {
	// Name is the built-in name or the file name without extension.
	Name string `json:"name"`
	// Source is the file ("builtin/sysctl/x.conf", a path) or "/proc/sys".
	Source string `json:"source"`
	// Entries are the lines in file order (a later duplicate wins in Map).
	Entries []Entry `json:"entries"`
}

// Map returns key -> value, later entries overriding earlier ones.
func (s *Sysctl) Map() map[string]string {
	m := make(map[string]string, len(s.Entries))
	for _, e := range s.Entries {
		m[e.Key] = e.Value
	}
	return m
}

// Text renders the profile as a sysctl.d file.
func (s *Sysctl) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# loadcap sysctl profile %q (from %s)\n", s.Name, s.Source)
	for _, e := range s.Entries {
		if e.IgnoreErrors {
			b.WriteByte('-')
		}
		fmt.Fprintf(&b, "%s = %s\n", e.Key, e.Value)
	}
	return b.String()
}

// loadHost reads the "host" profile: the live values of RelevantKeys in
// /proc/sys of the current network namespace.
func loadHost() (*Sysctl, error) {
	m, err := ReadSysctls("/proc/sys", RelevantKeys)
	if err != nil {
		return nil, fmt.Errorf("load sysctl profile host: %w", err)
	}
	s := &Sysctl{Name: HostProfile, Source: "/proc/sys"}
	for _, k := range RelevantKeys {
		if v, ok := m[k]; ok {
			s.Entries = append(s.Entries, Entry{Key: k, Value: v})
		}
	}
	return s, nil
}

// ParseSysctl parses sysctl.d content: "key = value" lines, keys dotted or
// slash-separated, "#" and ";" comments, a leading "-" to ignore failures.
// Values of known keys are validated.
func ParseSysctl(file, name string, data []byte) (*Sysctl, error) {
	s := &Sysctl{Name: name, Source: file}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		e := Entry{Line: n}
		if rest, ok := strings.CutPrefix(line, "-"); ok {
			e.IgnoreErrors, line = true, rest
		}
		k, v, ok := strings.Cut(line, "=")
		k = NormalizeKey(strings.TrimSpace(k))
		if !ok || k == "" {
			return nil, fmt.Errorf("load sysctl profile %w", &FileError{File: file, Line: n, Err: fmt.Errorf("want \"key = value\", got %q", line)})
		}
		e.Key, e.Value = k, strings.Join(strings.Fields(v), " ")
		if err := ValidateSysctl(e.Key, e.Value); err != nil {
			return nil, fmt.Errorf("load sysctl profile %w", &FileError{File: file, Line: n, Err: err})
		}
		s.Entries = append(s.Entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("load sysctl profile %s: %w", file, err)
	}
	return s, nil
}

// NormalizeKey turns a slash-separated sysctl name into the dotted form, as
// sysctl.d does: when the first separator is "/", dots inside components
// (interface names like eth0.100) become slashes.
func NormalizeKey(k string) string {
	i := strings.IndexAny(k, "./")
	if i < 0 || k[i] == '.' {
		return k
	}
	return swapSeparators(k)
}

// KeyPath returns the /proc/sys relative path of a sysctl key in either
// form ("net.ipv4.tcp_tw_reuse" or "net/ipv4/tcp_tw_reuse"), the way
// sysctl(8) maps them (dots inside a slashed component stay dots).
func KeyPath(k string) string { return keyPath(NormalizeKey(k)) }

// keyPath returns the /proc/sys relative path of a dotted key.
func keyPath(k string) string { return swapSeparators(k) }

// swapSeparators exchanges "." and "/": the dotted and the slashed forms
// of a sysctl name are each other's swap.
func swapSeparators(k string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, k)
}

// intRange is the accepted range of an integer sysctl: what the kernel
// accepts, narrowed to meaningful values (tcp_timestamps 0-2).
type intRange struct{ lo, hi int }

var intKeys = map[string]intRange{
	"net.ipv4.tcp_tw_reuse":         {0, 2},
	"net.ipv4.tcp_tw_reuse_delay":   {1, 60000}, // kernel max: TCP_PAWS_MSL (60 s)
	"net.ipv4.tcp_tw_recycle":       {0, 1},
	"net.ipv4.tcp_timestamps":       {0, 2},
	"net.ipv4.tcp_max_tw_buckets":   {0, 1<<31 - 1},
	"net.ipv4.tcp_fin_timeout":      {0, 1<<31 - 1},
	"net.ipv4.tcp_keepalive_time":   {1, 1<<31 - 1},
	"net.ipv4.tcp_keepalive_intvl":  {1, 32767},
	"net.ipv4.tcp_keepalive_probes": {1, 127},
	"net.ipv4.tcp_syncookies":       {0, 2},
	"net.ipv4.ip_forward":           {0, 1},
}

// ValidateSysctl checks the value of a known key and returns a *FieldError;
// unknown keys are accepted (sysctl.d files may set anything).
func ValidateSysctl(key, value string) error {
	switch key {
	case "net.ipv4.ip_local_port_range":
		if _, _, err := ParsePortRange(value); err != nil {
			return &FieldError{Key: key, Msg: err.Error()}
		}
		return nil
	case "net.ipv4.ip_local_reserved_ports":
		if _, err := CountReservedPorts(value, 1, 65535); err != nil {
			return &FieldError{Key: key, Msg: err.Error()}
		}
		return nil
	}
	r, ok := intKeys[key]
	if !ok {
		return nil
	}
	n, err := strconv.Atoi(value)
	if err != nil {
		return &FieldError{Key: key, Msg: fmt.Sprintf("%q is not an integer", value)}
	}
	if n < r.lo || n > r.hi {
		return &FieldError{Key: key, Msg: fmt.Sprintf("%d is outside %d-%d", n, r.lo, r.hi)}
	}
	return nil
}

// ParsePortRange parses an ip_local_port_range value ("32768 60999", any
// whitespace). Both ends must be within 1-65535 and low <= high.
func ParsePortRange(v string) (low, high int, err error) {
	f := strings.Fields(v)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("port range %q: want two numbers \"low high\"", v)
	}
	low, err1 := strconv.Atoi(f[0])
	high, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("port range %q: not numbers", v)
	}
	if low < 1 || high > 65535 {
		return 0, 0, fmt.Errorf("port range %q: ports must be within 1-65535", v)
	}
	if low > high {
		return 0, 0, fmt.Errorf("port range %q: low %d is above high %d", v, low, high)
	}
	return low, high, nil
}

// CountReservedPorts parses an ip_local_reserved_ports value
// ("8080,9000-9100", empty for none) and returns how many of those ports lie
// in [low, high].
func CountReservedPorts(v string, low, high int) (int, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	seen := make(map[int]bool)
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		a, b, isRange := strings.Cut(part, "-")
		lo, err := strconv.Atoi(strings.TrimSpace(a))
		if err != nil {
			return 0, fmt.Errorf("reserved ports %q: bad port %q", v, part)
		}
		hi := lo
		if isRange {
			if hi, err = strconv.Atoi(strings.TrimSpace(b)); err != nil {
				return 0, fmt.Errorf("reserved ports %q: bad range %q", v, part)
			}
		}
		if lo < 0 || hi > 65535 || lo > hi {
			return 0, fmt.Errorf("reserved ports %q: bad range %q", v, part)
		}
		for p := max(lo, low); p <= min(hi, high); p++ {
			seen[p] = true
		}
	}
	return len(seen), nil
}

// ReadSysctls reads the given dotted keys under procSysDir ("/proc/sys" for
// the current network namespace). Keys that do not exist on this kernel are
// left out of the map; other read errors are returned. Values have runs of
// whitespace collapsed ("32768\t60999" becomes "32768 60999").
func ReadSysctls(procSysDir string, keys []string) (map[string]string, error) {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		b, err := os.ReadFile(filepath.Join(procSysDir, KeyPath(k)))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read sysctl %s: %w", k, err)
		}
		m[k] = strings.Join(strings.Fields(string(b)), " ")
	}
	return m, nil
}

// SysctlExists reports whether a dotted key exists under procSysDir.
func SysctlExists(procSysDir, key string) bool {
	_, err := os.Stat(filepath.Join(procSysDir, KeyPath(key)))
	return err == nil
}
