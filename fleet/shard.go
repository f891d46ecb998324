package fleet

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxShards bounds the shard count of one fleet run.
const MaxShards = 10000

// MaxStartAhead is how far in the future a --start-at time may be.
const MaxStartAhead = 24 * time.Hour

// Environment variables read when --shard is not given: Kubernetes sets
// JOB_COMPLETION_INDEX in the pods of an Indexed Job; the total comes from
// LOADCAP_SHARDS (the Job's completions).
const (
	EnvJobIndex = "JOB_COMPLETION_INDEX"
	EnvShards   = "LOADCAP_SHARDS"
)

// Shard is one part of a fleet run: Index in 0..Count-1.
type Shard struct {
	Index, Count int
}

// String is the I/N form of --shard.
func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// Validate checks 0 <= Index < Count <= MaxShards.
func (s Shard) Validate() error {
	if s.Count < 1 || s.Count > MaxShards {
		return fmt.Errorf("bad shard count %d: want 1..%d", s.Count, MaxShards)
	}
	if s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("bad shard index %d of %d: want 0..%d", s.Index, s.Count, s.Count-1)
	}
	return nil
}

// Rate is this shard's part of a fleet rate: total/Count. --rate is the
// fleet's total per target, which is the figure a capacity plan asks for.
func (s Shard) Rate(total float64) float64 { return total / float64(s.Count) }

// ParseShard parses "I/N" (for example 0/3, the first of three shards).
func ParseShard(v string) (Shard, error) {
	i, n, ok := strings.Cut(strings.TrimSpace(v), "/")
	if !ok {
		return Shard{}, fmt.Errorf("bad --shard %q: want I/N, e.g. 0/3", v)
	}
	idx, err1 := strconv.Atoi(i)
	cnt, err2 := strconv.Atoi(n)
	if err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("bad --shard %q: want I/N with integers, e.g. 0/3", v)
	}
	s := Shard{Index: idx, Count: cnt}
	if err := s.Validate(); err != nil {
		return Shard{}, fmt.Errorf("bad --shard %q: %w", v, err)
	}
	return s, nil
}

// ShardFromEnv reads the shard from JOB_COMPLETION_INDEX and LOADCAP_SHARDS
// through lookup (os.LookupEnv). ok is false when neither is set; one
// without the other is an error naming the missing variable.
func ShardFromEnv(lookup func(string) (string, bool)) (s Shard, ok bool, err error) {
	idx, hasIdx := lookup(EnvJobIndex)
	cnt, hasCnt := lookup(EnvShards)
	switch {
	case !hasIdx && !hasCnt:
		return Shard{}, false, nil
	case !hasCnt:
		return Shard{}, false, fmt.Errorf("bad shard: %s=%s is set but %s (the shard count) is not", EnvJobIndex, idx, EnvShards)
	case !hasIdx:
		return Shard{}, false, fmt.Errorf("bad shard: %s=%s is set but %s (this shard's index) is not", EnvShards, cnt, EnvJobIndex)
	}
	i, err1 := strconv.Atoi(strings.TrimSpace(idx))
	n, err2 := strconv.Atoi(strings.TrimSpace(cnt))
	if err1 != nil || err2 != nil {
		return Shard{}, false, fmt.Errorf("bad shard %s=%q %s=%q: want integers", EnvJobIndex, idx, EnvShards, cnt)
	}
	s = Shard{Index: i, Count: n}
	if err := s.Validate(); err != nil {
		return Shard{}, false, fmt.Errorf("bad shard from %s/%s: %w", EnvJobIndex, EnvShards, err)
	}
	return s, true, nil
}

// ParseStartAt parses a --start-at time (RFC 3339, fractional seconds
// allowed).
func ParseStartAt(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(v))
	if err != nil {
		return time.Time{}, fmt.Errorf("bad --start-at %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", v)
	}
	return t, nil
}

// CheckStartAt bounds a start time: at most MaxStartAhead after now, and
// not further in the past than the run's duration (a shard that starts a
// little late still overlaps the others; one that would start after the
// fleet's window ended measures nothing useful).
func CheckStartAt(at, now time.Time, duration time.Duration) error {
	if d := at.Sub(now); d > MaxStartAhead {
		return fmt.Errorf("bad --start-at %s: %s from now, more than %s ahead", at.UTC().Format(time.RFC3339), d.Round(time.Second), MaxStartAhead)
	}
	if late := now.Sub(at); late > duration {
		return fmt.Errorf("bad --start-at %s: %s in the past, more than the run's duration %s", at.UTC().Format(time.RFC3339), late.Round(time.Second), duration)
	}
	return nil
}
