package fleet

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/loadgen"
)

func TestParseShard(t *testing.T) {
	for in, want := range map[string]Shard{"0/3": {0, 3}, " 2/3 ": {2, 3}, "0/1": {0, 1}} {
		got, err := ParseShard(in)
		if err != nil || got != want {
			t.Errorf("ParseShard(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "3", "3/3", "-1/3", "0/0", "a/3", "1/x", "0/10001"} {
		if _, err := ParseShard(bad); err == nil || !strings.HasPrefix(err.Error(), "bad --shard") {
			t.Errorf("ParseShard(%q): err %v", bad, err)
		}
	}
	if r := (Shard{1, 4}).Rate(1000); r != 250 {
		t.Errorf("rate %v", r)
	}
}

func TestShardFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) (string, bool) {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	s, ok, err := ShardFromEnv(env(EnvJobIndex, "2", EnvShards, "5"))
	if err != nil || !ok || s != (Shard{2, 5}) {
		t.Errorf("got %v %v %v", s, ok, err)
	}
	if _, ok, err := ShardFromEnv(env()); ok || err != nil {
		t.Errorf("no env: %v %v", ok, err)
	}
	for _, e := range [][]string{{EnvJobIndex, "1"}, {EnvShards, "3"}, {EnvJobIndex, "3", EnvShards, "3"}, {EnvJobIndex, "x", EnvShards, "3"}} {
		if _, _, err := ShardFromEnv(env(e...)); err == nil {
			t.Errorf("%v: no error", e)
		}
	}
	_, _, err = ShardFromEnv(env(EnvJobIndex, "1"))
	if !strings.Contains(err.Error(), "LOADCAP_SHARDS") {
		t.Errorf("error does not name the missing variable: %v", err)
	}
}

func TestStartAt(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	at, err := ParseStartAt("2026-01-02T15:00:30.5Z")
	if err != nil || !at.Equal(now.Add(30500*time.Millisecond)) {
		t.Fatalf("%v %v", at, err)
	}
	if _, err := ParseStartAt("15:00"); err == nil {
		t.Error("bad time accepted")
	}
	ok := []time.Time{now.Add(time.Minute), now.Add(24 * time.Hour), now.Add(-20 * time.Second)}
	for _, a := range ok {
		if err := CheckStartAt(a, now, 30*time.Second); err != nil {
			t.Errorf("%s refused: %v", a, err)
		}
	}
	bad := []time.Time{now.Add(24*time.Hour + time.Second), now.Add(-31 * time.Second)}
	for _, a := range bad {
		if err := CheckStartAt(a, now, 30*time.Second); err == nil {
			t.Errorf("%s accepted", a)
		}
	}
}

// TestShardSeries checks the generator's sharding: the shards' series are
// disjoint, together they are every series, and each shard cycles through
// all of its own.
func TestShardSeries(t *testing.T) {
	const series, shards, batch = 1000, 3, 7
	owner := map[int]int{}
	p := &loadgen.Point{}
	for s := 0; s < shards; s++ {
		cfg := loadgen.DefaultGenConfig()
		cfg.Series, cfg.Shard, cfg.Shards = series, s, shards
		g, err := loadgen.NewGenerator(cfg)
		if err != nil {
			t.Fatal(err)
		}
		mine := map[int]bool{}
		for seq := uint64(0); seq < 2*series/batch; seq++ {
			for j := 0; j < batch; j++ {
				g.Fill(p, seq, j, time.Unix(0, 0), batch)
				if p.Series%shards != s {
					t.Fatalf("shard %d wrote series %d", s, p.Series)
				}
				if o, ok := owner[p.Series]; ok && o != s {
					t.Fatalf("series %d written by shards %d and %d", p.Series, o, s)
				}
				owner[p.Series] = s
				mine[p.Series] = true
				if p.TagValues[0] != fmt.Sprintf("host-%06d", p.Series) {
					t.Fatalf("series %d has tag %s", p.Series, p.TagValues[0])
				}
			}
		}
		if want := (series - s + shards - 1) / shards; len(mine) != want {
			t.Errorf("shard %d wrote %d series, want %d", s, len(mine), want)
		}
	}
	if len(owner) != series {
		t.Errorf("shards wrote %d series together, want %d", len(owner), series)
	}
	for _, c := range []struct{ shard, shards, series int }{{3, 3, 10}, {-1, 3, 10}, {0, 11, 10}, {1, 0, 10}} {
		cfg := loadgen.DefaultGenConfig()
		cfg.Series, cfg.Shard, cfg.Shards = c.series, c.shard, c.shards
		if _, err := loadgen.NewGenerator(cfg); err == nil {
			t.Errorf("shard %d/%d of %d series accepted", c.shard, c.shards, c.series)
		}
	}
}
