package results

import (
	"encoding/base64"
	"fmt"
	"math"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// EncodeHistogram is how a result document stores a histogram: base64 of
// its HdrHistogram V2 compressed encoding (values in µs), "" when it
// cannot be encoded. DecodeHistogram reads it back.
func EncodeHistogram(h *hdrhistogram.Histogram) string {
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(b)
}

// DecodeHistogram decodes a stored histogram (base64 of an HdrHistogram V2
// compressed encoding, values in µs). A corrupt encoding is an error, never
// a panic.
func DecodeHistogram(s string) (h *hdrhistogram.Histogram, err error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("decode histogram: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			h, err = nil, fmt.Errorf("decode histogram: corrupt encoding: %v", p)
		}
	}()
	h, err = hdrhistogram.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("decode histogram: %w", err)
	}
	return h, nil
}

// MergedHistogram merges the latency histograms (service time histograms
// when service is true) of every target of d. It returns nil when a target
// has no histogram or one does not decode.
func MergedHistogram(d *Document, service bool) *hdrhistogram.Histogram {
	var out *hdrhistogram.Histogram
	for _, t := range d.Targets {
		h := TargetHistogram(t, service)
		if h == nil {
			return nil
		}
		if out == nil {
			out = h
			continue
		}
		out.Merge(h)
	}
	return out
}

// TargetHistogram decodes one target's latency (or service time)
// histogram, or returns nil when it has none or it does not decode.
func TargetHistogram(t Target, service bool) *hdrhistogram.Histogram {
	if t.Histograms == nil {
		return nil
	}
	enc := t.Histograms.Latency
	if service {
		enc = t.Histograms.ServiceTime
	}
	if enc == "" {
		return nil
	}
	h, err := DecodeHistogram(enc)
	if err != nil {
		return nil
	}
	return h
}

// LatencyOf summarises a histogram of microseconds in milliseconds, the way
// loadcap run fills latency_ms.
func LatencyOf(h *hdrhistogram.Histogram) Latency {
	if h == nil || h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return math.Round(float64(us)) / 1000 }
	return Latency{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: math.Round(h.Mean()) / 1000,
	}
}
