package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/loadcap/loadcap/results"
)

// Input is one result document to merge and the file it came from (used in
// messages and recorded in fleet.hosts[].file).
type Input struct {
	Path string
	Doc  *results.Document
}

// Options control Merge.
type Options struct {
	// Force merges runs whose configs differ or whose shards are
	// incomplete; what differed is recorded in fleet.differences.
	Force bool
}

// host is one input with what Merge works out about it.
type host struct {
	in    Input
	label string
	// off is the host's start relative to the fleet's start.
	off time.Duration
}

// Merge merges the result documents of one fleet run (the shards of
// `loadcap run --shard I/N`, or unsharded runs of one config on many hosts)
// into one document; see results.Fleet for what each figure means. It
// refuses, with a *MismatchError, inputs that are not parts of one run:
// different configs (unless opts.Force), shards of different counts,
// missing or repeated shards (unless opts.Force), a mix of sharded and
// unsharded runs, the same run twice, or an already merged document.
func Merge(in []Input, opts Options) (*results.Document, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("merge results: no result files")
	}
	hosts, shards, diffs, err := check(in, opts)
	if err != nil {
		return nil, err
	}
	first := hosts[0].in.Doc
	start, end := first.StartedAt, first.FinishedAt
	for _, h := range hosts {
		if h.in.Doc.StartedAt.Before(start) {
			start = h.in.Doc.StartedAt
		}
		if h.in.Doc.FinishedAt.After(end) {
			end = h.in.Doc.FinishedAt
		}
	}
	var spread time.Duration
	for i := range hosts {
		hosts[i].off = hosts[i].in.Doc.StartedAt.Sub(start)
		spread = max(spread, hosts[i].off)
	}

	doc := &results.Document{
		Schema:         results.SchemaVersion,
		ID:             mergedID(start, hosts),
		StartedAt:      start,
		FinishedAt:     end,
		LoadcapVersion: common(hosts, func(d *results.Document) string { return d.LoadcapVersion }),
		Kernel:         common(hosts, func(d *results.Document) string { return d.Kernel }),
		Host:           fmt.Sprintf("fleet of %d hosts", len(hosts)),
		Config:         first.Config,
	}
	doc.Config.Targets = append([]string(nil), first.Config.Targets...)
	fl := &results.Fleet{Shards: shards, StartSpreadMS: spread.Milliseconds(), Forced: len(diffs) > 0, Differences: diffs}
	doc.Fleet = fl
	// Each host's config.rate is what it paced (a shard: --rate/N), so the
	// fleet's is their sum: the --rate of a sharded run.
	var sum float64
	for _, h := range hosts {
		sum += h.in.Doc.Config.Rate
	}
	doc.Config.Rate = round2(sum)
	fl.Derived = append(fl.Derived, fmt.Sprintf("config.rate: sum of the %d hosts' config.rate (each host's is what it paced: --rate/%d for a shard), the fleet's total per target", len(hosts), max(shards, 1)))
	for _, h := range hosts {
		d := h.in.Doc
		doc.Interrupted = doc.Interrupted || d.Interrupted
		for _, n := range d.Notes {
			doc.Notes = append(doc.Notes, h.label+": "+n)
		}
		if len(d.Steps) > 0 {
			doc.Notes = append(doc.Notes, fmt.Sprintf("%s: %d --find-limit steps not merged (see its own result %s)", h.label, len(d.Steps), d.ID))
		}
	}
	if lim := startSpreadLimit(first); spread > lim {
		doc.Notes = append(doc.Notes, fmt.Sprintf("hosts started up to %d ms apart (more than %s): their windows overlap only in part; use --start-at", spread.Milliseconds(), lim))
	}

	mergeTargets(doc, hosts)
	mergeSysctl(doc, hosts)
	mergeTimeline(doc, hosts)
	mergeSampler(doc, hosts)
	for _, h := range hosts {
		fl.Hosts = append(fl.Hosts, fleetHost(h))
	}
	mergeCapacity(doc, hosts)
	return doc, nil
}

func mergedID(start time.Time, hosts []host) string {
	ids := make([]string, len(hosts))
	for i, h := range hosts {
		ids[i] = h.in.Doc.ID
	}
	sort.Strings(ids)
	sum := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	return start.UTC().Format("20060102T150405Z") + "-fleet-" + hex.EncodeToString(sum[:3])
}

// common returns the value every host has, or "mixed: a, b".
func common(hosts []host, get func(*results.Document) string) string {
	var vals []string
	seen := map[string]bool{}
	for _, h := range hosts {
		v := get(h.in.Doc)
		if !seen[v] {
			seen[v] = true
			vals = append(vals, v)
		}
	}
	if len(vals) == 1 {
		return vals[0]
	}
	return "mixed: " + strings.Join(vals, ", ")
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
