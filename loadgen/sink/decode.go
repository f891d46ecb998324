package sink

import (
	"errors"
	"fmt"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// precision is a write request's timestamp precision: one the lineprotocol
// package knows (ns, us, ms, s), a coarser v1 one (m, h) applied as a
// multiplier, or InfluxDB 3's "auto" (guessed from the magnitude).
type precision struct {
	lp   lineprotocol.Precision
	mult int64 // > 0: timestamp * mult nanoseconds (v1 "m" and "h")
	auto bool
}

var errUnknownPrecision = errors.New("unknown precision")

// parsePrecision maps a precision query parameter to a precision. An empty
// value means nanoseconds, except on v3 where it means auto.
func parsePrecision(a api, v string) (precision, error) {
	switch v {
	case "":
		if a == apiV3 {
			return precision{auto: true}, nil
		}
		return precision{lp: lineprotocol.Nanosecond}, nil
	case "n", "ns", "nanosecond":
		return precision{lp: lineprotocol.Nanosecond}, nil
	case "u", "us", "µ", "µs", "microsecond":
		return precision{lp: lineprotocol.Microsecond}, nil
	case "ms", "millisecond":
		return precision{lp: lineprotocol.Millisecond}, nil
	case "s", "second":
		return precision{lp: lineprotocol.Second}, nil
	case "auto":
		if a == apiV3 {
			return precision{auto: true}, nil
		}
	case "m":
		if a == apiV1 {
			return precision{mult: int64(time.Minute)}, nil
		}
	case "h":
		if a == apiV1 {
			return precision{mult: int64(time.Hour)}, nil
		}
	}
	return precision{}, fmt.Errorf("parse precision %q: %w", v, errUnknownPrecision)
}

// decodeBody decodes every line of buf and returns the number of good and
// bad lines and the first error. It allocates nothing per line.
func decodeBody(buf []byte, p precision, now time.Time) (good, bad int64, first error) {
	d := lineprotocol.NewDecoderWithBytes(buf)
	for d.Next() {
		if err := decodeLine(d, p, now); err != nil {
			bad++
			if first == nil {
				first = err
			}
			continue
		}
		good++
	}
	return good, bad, first
}

var (
	errNoFields       = errors.New("no fields")
	errTimeOutOfRange = errors.New("timestamp out of range")
)

// decodeLine decodes one whole entry: measurement, every tag, every field
// value (parsed to its type) and the timestamp.
func decodeLine(d *lineprotocol.Decoder, p precision, now time.Time) error {
	if _, err := d.Measurement(); err != nil {
		return err
	}
	for {
		key, _, err := d.NextTag()
		if err != nil {
			return err
		}
		if key == nil {
			break
		}
	}
	fields := 0
	for {
		key, _, err := d.NextField()
		if err != nil {
			return err
		}
		if key == nil {
			break
		}
		fields++
	}
	if fields == 0 {
		return errNoFields
	}
	if p.mult == 0 && !p.auto {
		_, err := d.Time(p.lp, now)
		return err
	}
	ts, err := d.TimeBytes()
	if err != nil || ts == nil {
		return err
	}
	n, ok := parseInt(ts)
	if !ok {
		return fmt.Errorf("invalid timestamp %q: %w", ts, errTimeOutOfRange)
	}
	mult := p.mult
	if p.auto {
		mult = guessMultiplier(n)
	}
	if c := n * mult; mult != 0 && c/mult != n {
		return fmt.Errorf("timestamp %d: %w", n, errTimeOutOfRange)
	}
	return nil
}

// guessMultiplier is InfluxDB 3's precision=auto: the unit is guessed from
// the magnitude of the timestamp.
func guessMultiplier(ts int64) int64 {
	if ts < 0 {
		ts = -ts
	}
	switch {
	case ts < 5e9:
		return int64(time.Second)
	case ts < 5e12:
		return int64(time.Millisecond)
	case ts < 5e15:
		return int64(time.Microsecond)
	default:
		return 1
	}
}

// parseInt parses a decimal int64 (the decoder has already checked that only
// '-' and digits occur) without allocating.
func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}
