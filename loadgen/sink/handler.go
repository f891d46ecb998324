package sink

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/loadcap/loadcap/internal/faults"
)

// api is one of the write paths.
type api uint8

const (
	apiV1 api = iota
	apiV2
	apiV3
	numAPIs
)

var (
	buildHeader = []string{"OSS"}

	errTooLarge            = errors.New("request body too large")
	errUnsupportedEncoding = errors.New("unsupported content encoding")
)

// maxPooledBuffer is the largest body buffer kept for reuse; a rare huge
// write does not pin its memory for the life of the sink.
const maxPooledBuffer = 8 << 20

// ServeHTTP implements http.Handler: the write paths, /ping and /health.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	w.Header()["X-Influxdb-Version"] = s.version
	if s.opts.Intercept != nil && s.opts.Intercept(w, r) {
		return
	}
	switch r.URL.Path {
	case "/write":
		s.serveWrite(w, r, apiV1)
	case "/api/v2/write":
		s.serveWrite(w, r, apiV2)
	case "/api/v3/write_lp":
		s.serveWrite(w, r, apiV3)
	case "/ping":
		s.servePing(w, r)
	case "/health":
		s.serveHealth(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) servePing(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h["X-Influxdb-Build"] = buildHeader
	if queryValue(r.URL.RawQuery, "verbose") == "true" {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(map[string]string{"version": s.version[0]})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"name":    "influxdb",
		"message": "ready for queries and writes",
		"status":  "pass",
		"checks":  []string{},
		"version": s.version[0],
	})
}

func (s *Server) serveWrite(w http.ResponseWriter, r *http.Request, a api) {
	pc := &s.paths[a]
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		s.reject(w, a, pc, http.StatusMethodNotAllowed, "method not allowed: "+r.Method)
		return
	}
	q := r.URL.RawQuery
	prec, err := parsePrecision(a, queryValue(q, "precision"))
	if err != nil {
		s.reject(w, a, pc, http.StatusBadRequest, err.Error())
		return
	}
	if msg := checkTarget(a, q); msg != "" {
		s.reject(w, a, pc, http.StatusBadRequest, msg)
		return
	}
	if !s.authorized(a, r) {
		s.reject(w, a, pc, http.StatusUnauthorized, "authorization failed")
		return
	}

	b := s.bufs.Get().(*body)
	defer s.putBody(b)
	if err := b.read(r, s.maxBody); err != nil {
		status := http.StatusBadRequest
		switch {
		case errors.Is(err, errTooLarge):
			status = http.StatusRequestEntityTooLarge
		case errors.Is(err, errUnsupportedEncoding):
			status = http.StatusUnsupportedMediaType
		}
		s.reject(w, a, pc, status, err.Error())
		return
	}

	seq := s.seq.Add(1)
	if d := s.opts.Latency; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if s.inject(seq) {
		pc.errors.Add(1)
		writeError(w, a, http.StatusInternalServerError, "injected error (sink error rate)")
		return
	}

	good, bad, first := decodeBody(b.buf, prec, time.Now())
	pc.bytes.Add(int64(len(b.buf)))
	pc.lines.Add(good)
	if bad > 0 {
		pc.badLines.Add(bad)
		s.reject(w, a, pc, http.StatusBadRequest,
			fmt.Sprintf("partial write: unable to parse: %v dropped=%d", first, bad))
		return
	}
	if good == 0 && a == apiV2 {
		s.reject(w, a, pc, http.StatusBadRequest, "writing requires points")
		return
	}
	pc.writes.Add(1)
	w.WriteHeader(http.StatusNoContent)
}

// reject answers a write with a 4xx error and counts it.
func (s *Server) reject(w http.ResponseWriter, a api, pc *pathCounters, status int, msg string) {
	pc.badRequests.Add(1)
	writeError(w, a, status, msg)
}

// maxErrorMessage bounds the error text echoed back (a bad line can be long).
const maxErrorMessage = 1024

// writeError writes an InfluxDB-style JSON error: {"error": msg} on v1 (and
// the X-Influxdb-Error header), {"code": c, "message": msg} on v2 and v3.
func writeError(w http.ResponseWriter, a api, status int, msg string) {
	if len(msg) > maxErrorMessage {
		msg = msg[:maxErrorMessage] + "..."
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	var v any
	if a == apiV1 {
		h.Set("X-Influxdb-Error", msg)
		v = struct {
			Error string `json:"error"`
		}{msg}
	} else {
		v = struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}{errorCode(status), msg}
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// errorCode is the InfluxDB 2 error code for an HTTP status.
func errorCode(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not found"
	case http.StatusMethodNotAllowed:
		return "method not allowed"
	case http.StatusRequestEntityTooLarge:
		return "request too large"
	case http.StatusUnsupportedMediaType:
		return "unsupported media type"
	case http.StatusTooManyRequests:
		return "too many requests"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	if status >= 500 {
		return "internal error"
	}
	return "invalid"
}

// checkTarget returns a message if the query lacks the database or bucket
// the write path requires.
func checkTarget(a api, q string) string {
	switch a {
	case apiV1:
		if queryValue(q, "db") == "" {
			return "database is required"
		}
	case apiV2:
		if queryValue(q, "org") == "" && queryValue(q, "orgID") == "" {
			return "Please provide either orgID or org"
		}
		if queryValue(q, "bucket") == "" && queryValue(q, "bucketID") == "" {
			return "Please provide either bucketID or bucket"
		}
	case apiV3:
		if queryValue(q, "db") == "" {
			return "missing db query parameter"
		}
	}
	return ""
}

// authorized checks the credentials configured in Options, if any.
func (s *Server) authorized(a api, r *http.Request) bool {
	if a == apiV1 {
		if s.opts.Username == "" {
			return true
		}
		u, p := queryValue(r.URL.RawQuery, "u"), queryValue(r.URL.RawQuery, "p")
		if u == "" {
			var ok bool
			if u, p, ok = r.BasicAuth(); !ok {
				// InfluxDB 1.8 also takes "Authorization: Token user:password".
				if tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Token "); found {
					u, p, _ = strings.Cut(tok, ":")
				}
			}
		}
		return u == s.opts.Username && p == s.opts.Password
	}
	if s.opts.Token == "" {
		return true
	}
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Token ")
	if !ok {
		tok, ok = strings.CutPrefix(auth, "Bearer ")
	}
	return ok && tok == s.opts.Token
}

// inject reports whether the write with sequence number seq is answered 500
// (see internal/faults).
func (s *Server) inject(seq uint64) bool { return faults.Pick(s.opts.ErrorRate, s.opts.Seed, seq) }

// queryValue returns the first value of key in the raw query string, without
// allocating unless the query is percent-encoded.
func queryValue(raw, key string) string {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != key {
			if !strings.ContainsAny(k, "%+") {
				continue
			}
			if uk, err := url.QueryUnescape(k); err != nil || uk != key {
				continue
			}
		}
		if uv, err := url.QueryUnescape(v); err == nil {
			return uv
		}
		return v
	}
	return ""
}

// body is a pooled request body buffer with its gzip reader.
type body struct {
	buf []byte
	gz  *gzip.Reader
}

func (s *Server) putBody(b *body) {
	if cap(b.buf) > maxPooledBuffer {
		b.buf = nil
	}
	s.bufs.Put(b)
}

// read reads the whole request body (decompressed) into b.buf, failing with
// errTooLarge beyond limit bytes.
func (b *body) read(r *http.Request, limit int64) error {
	var src io.Reader = r.Body
	ce := r.Header.Get("Content-Encoding")
	switch ce {
	case "", "identity":
		if r.ContentLength > limit {
			return fmt.Errorf("read body: %w (%d > %d bytes)", errTooLarge, r.ContentLength, limit)
		}
		if need := int(r.ContentLength) + 1; r.ContentLength > 0 && cap(b.buf) < need {
			b.buf = make([]byte, 0, need)
		}
	case "gzip":
		if b.gz == nil {
			gz, err := gzip.NewReader(r.Body)
			if err != nil {
				return fmt.Errorf("read gzip body: %w", err)
			}
			b.gz = gz
		} else if err := b.gz.Reset(r.Body); err != nil {
			return fmt.Errorf("read gzip body: %w", err)
		}
		src = b.gz
	default:
		return fmt.Errorf("read body: %w %q", errUnsupportedEncoding, ce)
	}
	buf := b.buf[:0]
	for {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), max(2*cap(buf), 4096))
			copy(grown, buf)
			buf = grown
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			b.buf = buf[:0]
			return fmt.Errorf("read body: %w (> %d bytes)", errTooLarge, limit)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			b.buf = buf[:0]
			return fmt.Errorf("read body: %w", err)
		}
	}
	b.buf = buf
	return nil
}
