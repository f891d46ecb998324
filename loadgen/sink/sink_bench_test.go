package sink

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

const benchLines = 100

// rewindBody is a reusable request body.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// discardWriter is a reusable http.ResponseWriter that keeps only the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

func reportLines(b *testing.B, linesPerOp int) {
	b.ReportMetric(float64(b.N)*float64(linesPerOp)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkHandler measures the sink's write handler (query parsing, body
// read into a pooled buffer, full decode, counting) on a 100-line batch,
// without the network.
func BenchmarkHandler(b *testing.B) {
	data := batch(benchLines)
	s := New(Options{})
	req := httptest.NewRequest(http.MethodPost, "/write?db=loadcap&precision=ns", nil)
	req.ContentLength = int64(len(data))
	body := &rewindBody{}
	req.Body = body
	w := &discardWriter{h: http.Header{}}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		body.Reset(data)
		s.ServeHTTP(w, req)
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	}
	reportLines(b, benchLines)
}

// BenchmarkDecode measures decoding alone on a 100-line batch.
func BenchmarkDecode(b *testing.B) {
	data := batch(benchLines)
	now := time.Now()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for range b.N {
		if good, _, err := decodeBody(data, precision{}, now); good != benchLines {
			b.Fatalf("decoded %d lines: %v", good, err)
		}
	}
	reportLines(b, benchLines)
}

// BenchmarkEndToEnd measures 100-line v1 writes from keep-alive net/http
// clients over loopback; client and sink share the machine's cores, and the
// allocations reported are the client's and the sink's together.
func BenchmarkEndToEnd(b *testing.B) {
	data := batch(benchLines)
	s, err := Start("127.0.0.1:0", Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	url := s.URL() + "/write?db=loadcap"
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		body := &rewindBody{}
		for pb.Next() {
			body.Reset(data)
			req, err := http.NewRequest(http.MethodPost, url, body)
			if err != nil {
				b.Error(err)
				return
			}
			req.ContentLength = int64(len(data))
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	reportLines(b, benchLines)
	if st := s.Stats(); st.Lines != int64(b.N)*benchLines {
		b.Errorf("sink counted %d lines, want %d", st.Lines, b.N*benchLines)
	}
}
