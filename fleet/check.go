package fleet

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/loadcap/loadcap/results"
)

// MismatchError says the inputs are not the parts of one fleet run. Its
// message is one line naming what differs; the command exits with status 2.
type MismatchError struct {
	// Field is the differing config field (JSON name, e.g. "config.batch"),
	// or "shard", or "" for other refusals.
	Field string
	msg   string
}

func (e *MismatchError) Error() string { return e.msg }

func mismatch(field, format string, args ...any) error {
	return &MismatchError{Field: field, msg: fmt.Sprintf(format, args...)}
}

// Difference is one config field that differs between two runs.
type Difference struct {
	// Field is the JSON name, prefixed with "config.".
	Field string
	A, B  string
}

// ConfigDiff lists the fields of b that differ from a, in field order.
func ConfigDiff(a, b results.Config) []Difference {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	t := va.Type()
	var out []Difference
	for i := 0; i < t.NumField(); i++ {
		fa, fb := va.Field(i).Interface(), vb.Field(i).Interface()
		if reflect.DeepEqual(fa, fb) {
			continue
		}
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		out = append(out, Difference{Field: "config." + name, A: show(fa), B: show(fb)})
	}
	return out
}

func show(v any) string {
	switch x := v.(type) {
	case []string:
		return "[" + strings.Join(x, ",") + "]"
	case string:
		if x == "" {
			return `""`
		}
		return x
	}
	return fmt.Sprint(v)
}

// startSpreadLimit is the start spread beyond which the merged windows are
// noticeably misaligned: 10 % of the duration, at least 1 s.
func startSpreadLimit(d *results.Document) time.Duration {
	return max(time.Second, time.Duration(d.Config.DurationS*0.1*float64(time.Second)))
}

// check validates the inputs as parts of one run and orders them (by
// shard, else by start time). It returns the shard count (0: unsharded)
// and, with Force, the differences it let through.
func check(in []Input, opts Options) ([]host, int, []string, error) {
	seen := map[string]string{}
	sharded := 0
	for _, x := range in {
		if x.Doc == nil {
			return nil, 0, nil, fmt.Errorf("merge results: %s: no document", x.Path)
		}
		if x.Doc.Fleet != nil {
			return nil, 0, nil, mismatch("", "merge results: %s is already a merged fleet document (%d hosts); merge the hosts' own files", x.Path, len(x.Doc.Fleet.Hosts))
		}
		if p, ok := seen[x.Doc.ID]; ok {
			return nil, 0, nil, mismatch("", "merge results: %s and %s are the same run (id %s)", p, x.Path, x.Doc.ID)
		}
		seen[x.Doc.ID] = x.Path
		if x.Doc.Shard != nil {
			sharded++
		}
	}
	if sharded != 0 && sharded != len(in) {
		var plain []string
		for _, x := range in {
			if x.Doc.Shard == nil {
				plain = append(plain, x.Path)
			}
		}
		return nil, 0, nil, mismatch("shard", "merge results: %s not sharded but the other runs are (--shard): not parts of one fleet run", strings.Join(plain, ", "))
	}
	hosts := make([]host, len(in))
	for i, x := range in {
		hosts[i] = host{in: x}
	}
	var diffs []string
	shards := 0
	if sharded > 0 {
		shards = in[0].Doc.Shard.Count
		for _, x := range in[1:] {
			if x.Doc.Shard.Count != shards {
				return nil, 0, nil, mismatch("shard", "merge results: shard counts differ: %d in %s, %d in %s", shards, in[0].Path, x.Doc.Shard.Count, x.Path)
			}
		}
		sort.SliceStable(hosts, func(i, j int) bool { return hosts[i].in.Doc.Shard.Index < hosts[j].in.Doc.Shard.Index })
		have := map[int]string{}
		for _, h := range hosts {
			s := h.in.Doc.Shard
			if s.Index < 0 || s.Index >= shards {
				return nil, 0, nil, mismatch("shard", "merge results: %s: bad shard %d/%d", h.in.Path, s.Index, s.Count)
			}
			if p, ok := have[s.Index]; ok {
				msg := fmt.Sprintf("shard %d/%d twice: %s and %s", s.Index, shards, p, h.in.Path)
				if !opts.Force {
					return nil, 0, nil, mismatch("shard", "merge results: %s (--force merges anyway)", msg)
				}
				diffs = append(diffs, msg)
			}
			have[s.Index] = h.in.Path
		}
		var missing []string
		for i := 0; i < shards && len(missing) < 10; i++ {
			if _, ok := have[i]; !ok {
				missing = append(missing, fmt.Sprintf("%d/%d", i, shards))
			}
		}
		if len(missing) > 0 {
			msg := "missing shards " + strings.Join(missing, ", ")
			if !opts.Force {
				return nil, 0, nil, mismatch("shard", "merge results: %s (--force merges the %d present)", msg, len(in))
			}
			diffs = append(diffs, msg)
		}
	} else {
		sort.SliceStable(hosts, func(i, j int) bool { return hosts[i].in.Doc.StartedAt.Before(hosts[j].in.Doc.StartedAt) })
	}
	ref := hosts[0]
	for _, h := range hosts[1:] {
		for _, d := range ConfigDiff(ref.in.Doc.Config, h.in.Doc.Config) {
			if !opts.Force {
				return nil, 0, nil, mismatch(d.Field, "merge results: %s differs: %s in %s, %s in %s (--force merges anyway)", d.Field, d.A, ref.in.Path, d.B, h.in.Path)
			}
			diffs = append(diffs, fmt.Sprintf("%s: %s in %s, %s in %s", d.Field, d.A, ref.in.Path, d.B, h.in.Path))
		}
	}
	labelHosts(hosts)
	return hosts, shards, diffs, nil
}

// labelHosts names each host: its host name when unique, else the host
// name and its shard (or position).
func labelHosts(hosts []host) {
	count := map[string]int{}
	for _, h := range hosts {
		count[hostName(h.in.Doc)]++
	}
	used := map[string]bool{}
	for i := range hosts {
		d := hosts[i].in.Doc
		l := hostName(d)
		if count[l] > 1 {
			if d.Shard != nil {
				l = fmt.Sprintf("%s#%d", l, d.Shard.Index)
			} else {
				l = fmt.Sprintf("%s#%d", l, i)
			}
		}
		for n := 2; used[l] && n < len(hosts)+2; n++ {
			l = fmt.Sprintf("%s-%d", hostName(d), n)
		}
		used[l] = true
		hosts[i].label = l
	}
}

func hostName(d *results.Document) string {
	if d.Host != "" {
		return d.Host
	}
	return "host"
}
