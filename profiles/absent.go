package profiles

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// AbsentKeys returns one *FileError per entry whose key does not exist under
// procSys ("/proc/sys"): a typo such as net.ipv4.ip_local_port_rang, or a key
// of another kernel. Such a key is ignored (the lab skips it, the model uses
// the Linux default), so a caller should say so. Left out are entries with a
// leading "-" (the file accepts their absence, as sysctl.d does) and keys
// that Lint knows were removed from Linux (tcp_tw_recycle: lint explains
// them). Nothing is returned when procSys has no net/ipv4 tree to check
// against, or for the live "host" profile.
func (s *Sysctl) AbsentKeys(procSys string) []error {
	if s.Source == "/proc/sys" || !SysctlExists(procSys, "net.ipv4.ip_local_port_range") {
		return nil
	}
	var out []error
	for _, e := range s.Entries {
		if e.IgnoreErrors || knownKeys[e.Key].removed != "" || SysctlExists(procSys, e.Key) {
			continue
		}
		msg := fmt.Sprintf("not on this kernel (no %s), so it is ignored and the Linux default applies",
			filepath.Join(procSys, KeyPath(e.Key)))
		if near := nearestKey(e.Key, procSys); near != "" {
			msg += "; did you mean " + near + "?"
		}
		out = append(out, &FileError{File: s.Source, Line: e.Line, Key: e.Key, Err: &FieldError{Key: e.Key, Msg: msg}})
	}
	return out
}

// nearestKey returns the key loadcap knows (and procSys has) closest to k
// when it is a likely typo of it (at most 3 edits), or "".
func nearestKey(k, procSys string) string {
	var cands []string
	for c := range knownKeys {
		cands = append(cands, c)
	}
	cands = append(cands, RelevantKeys...)
	slices.Sort(cands)
	best, bestD := "", 4
	for _, c := range slices.Compact(cands) {
		if d := editDistance(strings.ToLower(k), c); d < bestD && SysctlExists(procSys, c) {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
