package loadgen

import (
	"fmt"
	"math"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// GenConfig shapes the generated points like a monitoring agent's.
type GenConfig struct {
	// Measurement is the measurement (table) name.
	Measurement string
	// Series is the number of distinct series (tag-set cardinality).
	Series int
	// Tags is the number of tags per line (at least 1: the series key).
	Tags int
	// Floats, Ints, Bools and Strings are the number of fields of each type.
	Floats, Ints, Bools, Strings int
	// Precision is the timestamp precision: "ns", "us", "ms" or "s".
	Precision string
	// Seed makes the values reproducible.
	Seed int64
	// Shard and Shards give this generator its part of the series space in
	// a fleet run (loadcap run --shard Shard/Shards): with Shards > 1 it
	// writes only series Shard, Shard+Shards, Shard+2*Shards, ... so that
	// no two shards write the same series. Shards 0 or 1: every series.
	Shard, Shards int
}

// DefaultGenConfig is what `loadcap run` writes when not told otherwise.
func DefaultGenConfig() GenConfig {
	return GenConfig{Measurement: "loadcap", Series: 1000, Tags: 3, Floats: 3, Ints: 1, Bools: 1, Strings: 1, Precision: "ns", Seed: 1}
}

// FieldKind is the type of a generated field.
type FieldKind uint8

// Field kinds, in the order fields appear in a line.
const (
	FieldFloat FieldKind = iota
	FieldInt
	FieldBool
	FieldString
)

// Field describes one generated field column.
type Field struct {
	Key  string
	Kind FieldKind
}

// Generator produces deterministic points: the content of write seq is a pure
// function of (Seed, seq), so every target of a dual-write receives the same
// points without sharing buffers. A Generator is read-only after NewGenerator
// and safe for concurrent use; encoding state lives in the caller's Encoder.
type Generator struct {
	cfg       GenConfig
	prec      lineprotocol.Precision
	tagKeys   []string
	tagValues [][]string // [series][tag]
	fields    []Field
	strVals   [][]byte
	strValues []lineprotocol.Value // strVals as encoder values, built once
	// own is the number of series of this shard, stride the shard count
	// (0 when not sharded).
	own    uint64
	stride int
}

// NewGenerator validates cfg and precomputes tag sets and keys.
func NewGenerator(cfg GenConfig) (*Generator, error) {
	if cfg.Measurement == "" {
		cfg.Measurement = "loadcap"
	}
	if cfg.Series < 1 || cfg.Series > 10_000_000 {
		return nil, fmt.Errorf("bad series count %d: want 1..10000000", cfg.Series)
	}
	if cfg.Tags < 1 || cfg.Tags > 32 {
		return nil, fmt.Errorf("bad tags per line %d: want 1..32", cfg.Tags)
	}
	if cfg.Floats < 0 || cfg.Ints < 0 || cfg.Bools < 0 || cfg.Strings < 0 || cfg.Floats+cfg.Ints+cfg.Bools+cfg.Strings == 0 {
		return nil, fmt.Errorf("bad field mix %d/%d/%d/%d: want at least one field and no negative count", cfg.Floats, cfg.Ints, cfg.Bools, cfg.Strings)
	}
	if cfg.Shards < 0 || cfg.Shard < 0 || (cfg.Shards > 1 && cfg.Shard >= cfg.Shards) || (cfg.Shards <= 1 && cfg.Shard != 0) {
		return nil, fmt.Errorf("bad shard %d/%d: want 0 <= shard < shards", cfg.Shard, cfg.Shards)
	}
	if cfg.Shards > cfg.Series {
		return nil, fmt.Errorf("bad shard count %d for %d series: every shard needs at least one series", cfg.Shards, cfg.Series)
	}
	prec, err := ParsePrecision(cfg.Precision)
	if err != nil {
		return nil, err
	}
	g := &Generator{cfg: cfg, prec: prec}
	if cfg.Shards > 1 {
		g.stride = cfg.Shards
		g.own = uint64((cfg.Series - cfg.Shard + cfg.Shards - 1) / cfg.Shards)
	}
	// Tag keys must be sorted for line protocol; "host" first then t01..
	g.tagKeys = make([]string, cfg.Tags)
	g.tagKeys[0] = "host"
	for i := 1; i < cfg.Tags; i++ {
		g.tagKeys[i] = fmt.Sprintf("t%02d", i)
	}
	g.tagValues = make([][]string, cfg.Series)
	for s := range g.tagValues {
		vals := make([]string, cfg.Tags)
		vals[0] = fmt.Sprintf("host-%06d", s)
		for i := 1; i < cfg.Tags; i++ {
			// Lower-cardinality tags, like region or rack.
			vals[i] = fmt.Sprintf("v%d", s%(4*i+1))
		}
		g.tagValues[s] = vals
	}
	add := func(n int, prefix string, k FieldKind) {
		for i := 0; i < n; i++ {
			g.fields = append(g.fields, Field{Key: fmt.Sprintf("%s%d", prefix, i), Kind: k})
		}
	}
	add(cfg.Floats, "f", FieldFloat)
	add(cfg.Ints, "i", FieldInt)
	add(cfg.Bools, "b", FieldBool)
	add(cfg.Strings, "s", FieldString)
	for _, v := range []string{"ok", "warn", "critical", "unknown"} {
		g.strVals = append(g.strVals, []byte(v))
		lv, _ := lineprotocol.StringValue(v)
		g.strValues = append(g.strValues, lv)
	}
	return g, nil
}

// ParsePrecision parses ns, us, ms or s.
func ParsePrecision(s string) (lineprotocol.Precision, error) {
	switch s {
	case "", "ns", "n":
		return lineprotocol.Nanosecond, nil
	case "us", "u":
		return lineprotocol.Microsecond, nil
	case "ms":
		return lineprotocol.Millisecond, nil
	case "s":
		return lineprotocol.Second, nil
	}
	return 0, fmt.Errorf("bad precision %q: want ns, us, ms or s", s)
}

// Config returns the generator's configuration.
func (g *Generator) Config() GenConfig { return g.cfg }

// Precision returns the timestamp precision.
func (g *Generator) Precision() lineprotocol.Precision { return g.prec }

// TagKeys returns the tag keys, in line order.
func (g *Generator) TagKeys() []string { return g.tagKeys }

// Fields returns the field columns, in line order.
func (g *Generator) Fields() []Field { return g.fields }

// splitmix64 is a tiny, fast, well-mixed PRNG step.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Point is one generated line, valid until the next call that fills it.
type Point struct {
	Series    int
	TagValues []string
	// Values holds one value per field (see Generator.Fields): float64 bits
	// for floats, int64 for ints, 0/1 for bools, an index for strings.
	Values []uint64
	Time   time.Time
}

// Fill sets p to line j of write seq whose intended start is t. Timestamps are
// t + j ns (truncated to the precision), so lines of one write never collide.
func (g *Generator) Fill(p *Point, seq uint64, j int, t time.Time, batch int) {
	n := seq*uint64(batch) + uint64(j)
	if g.stride > 1 {
		p.Series = int(n%g.own)*g.stride + g.cfg.Shard
	} else {
		p.Series = int(n % uint64(g.cfg.Series))
	}
	p.TagValues = g.tagValues[p.Series]
	if cap(p.Values) < len(g.fields) {
		p.Values = make([]uint64, len(g.fields))
	}
	p.Values = p.Values[:len(g.fields)]
	r := splitmix64(uint64(g.cfg.Seed) ^ splitmix64(n))
	for i, f := range g.fields {
		r = splitmix64(r)
		switch f.Kind {
		case FieldFloat:
			// Two decimals, like most gauges an agent reports (and cheaper
			// to format than a full 17-digit mantissa).
			p.Values[i] = math.Float64bits(float64(r%100_000) / 100)
		case FieldInt:
			p.Values[i] = r % 1_000_000
		case FieldBool:
			p.Values[i] = r & 1
		case FieldString:
			p.Values[i] = r % uint64(len(g.strVals))
		}
	}
	p.Time = t.Add(time.Duration(j))
}

// StringValue returns the string value of a string field.
func (g *Generator) StringValue(v uint64) string { return string(g.strVals[v]) }

// Encode appends the batch of write seq (intended start t, batch lines) to
// enc's buffer. The encoder is the caller's; with its buffer reused between
// calls, encoding allocates nothing.
func (g *Generator) Encode(enc *lineprotocol.Encoder, p *Point, seq uint64, t time.Time, batch int) error {
	enc.SetPrecision(g.prec)
	enc.SetLax(true) // keys are generated valid and sorted
	for j := 0; j < batch; j++ {
		g.Fill(p, seq, j, t, batch)
		enc.StartLine(g.cfg.Measurement)
		for i, k := range g.tagKeys {
			enc.AddTag(k, p.TagValues[i])
		}
		for i, f := range g.fields {
			var v lineprotocol.Value
			switch f.Kind {
			case FieldFloat:
				v, _ = lineprotocol.FloatValue(math.Float64frombits(p.Values[i]))
			case FieldInt:
				v = lineprotocol.IntValue(int64(p.Values[i]))
			case FieldBool:
				v = lineprotocol.BoolValue(p.Values[i] == 1)
			case FieldString:
				v = g.strValues[p.Values[i]]
			}
			enc.AddField(f.Key, v)
		}
		enc.EndLine(p.Time)
	}
	if err := enc.Err(); err != nil {
		return fmt.Errorf("encode batch %d: %w", seq, err)
	}
	return nil
}
