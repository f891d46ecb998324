package sink

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// batch returns n valid lines in the shape of a monitoring agent's output.
func batch(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "cpu,host=server%02d,region=eu-west,cpu=cpu%d usage_user=%d.5,usage_system=3.25,count=%di,ok=true,msg=\"fine \\\"quoted\\\"\" %d\n",
			i%10, i%4, i%100, i, 1700000000000000000+int64(i))
	}
	return b.Bytes()
}

func startSink(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func post(t *testing.T, c *http.Client, url string, hdr http.Header, body []byte) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

func TestWritePaths(t *testing.T) {
	s := startSink(t, Options{})
	c := &http.Client{Timeout: 10 * time.Second}
	body := batch(100)
	cases := []struct {
		path string
		get  func(Stats) PathStats
	}{
		{"/write?db=loadcap&rp=autogen&precision=ns&u=a&p=b", func(st Stats) PathStats { return st.V1 }},
		{"/api/v2/write?org=o&bucket=b&precision=ns", func(st Stats) PathStats { return st.V2 }},
		{"/api/v3/write_lp?db=loadcap&precision=nanosecond", func(st Stats) PathStats { return st.V3 }},
	}
	for _, tc := range cases {
		code, resp, _ := post(t, c, s.URL()+tc.path, nil, body)
		if code != http.StatusNoContent {
			t.Fatalf("POST %s: status %d (%s), want 204", tc.path, code, resp)
		}
		got := tc.get(s.Stats())
		want := PathStats{Writes: 1, Lines: 100, Bytes: int64(len(body))}
		if got != want {
			t.Errorf("POST %s: path stats %+v, want %+v", tc.path, got, want)
		}
	}
	st := s.Stats()
	if st.Writes != 3 || st.Lines != 300 || st.Requests != 3 || st.Bytes != 3*int64(len(body)) {
		t.Errorf("totals %+v", st)
	}
}

func TestGzip(t *testing.T) {
	s := startSink(t, Options{})
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	body := batch(50)
	if _, err := zw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	hdr := http.Header{"Content-Encoding": {"gzip"}}
	for i := range 3 { // the pooled gzip reader is reused
		code, resp, _ := post(t, c, s.URL()+"/api/v2/write?org=o&bucket=b", hdr, zb.Bytes())
		if code != http.StatusNoContent {
			t.Fatalf("write %d: status %d (%s)", i, code, resp)
		}
	}
	if st := s.Stats(); st.Lines != 150 || st.Bytes != 3*int64(len(body)) {
		t.Errorf("stats %+v, want 150 lines, %d bytes", st.PathStats, 3*len(body))
	}
	code, resp, _ := post(t, c, s.URL()+"/write?db=x", hdr, []byte("not gzip"))
	if code != http.StatusBadRequest || !strings.Contains(string(resp), "gzip") {
		t.Errorf("bad gzip: %d %s", code, resp)
	}
}

func TestBadLine(t *testing.T) {
	s := startSink(t, Options{})
	c := &http.Client{Timeout: 10 * time.Second}
	body := []byte("m,t=a f=1 1\nm,t=b nofield\nm f=2 2\nm f=3 12x\n")

	code, resp, hdr := post(t, c, s.URL()+"/write?db=loadcap", nil, body)
	if code != http.StatusBadRequest {
		t.Fatalf("v1 bad line: status %d, want 400", code)
	}
	var v1 struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(resp, &v1); err != nil || !strings.Contains(v1.Error, "dropped=2") {
		t.Errorf("v1 error body %s (%v), want {\"error\":...dropped=2}", resp, err)
	}
	if hdr.Get("X-Influxdb-Error") == "" || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Errorf("v1 error headers %v", hdr)
	}

	for _, path := range []string{"/api/v2/write?org=o&bucket=b", "/api/v3/write_lp?db=d"} {
		code, resp, _ = post(t, c, s.URL()+path, nil, body)
		var v2 struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(resp, &v2); err != nil || code != http.StatusBadRequest ||
			v2.Code != "invalid" || !strings.Contains(v2.Message, "line 2") {
			t.Errorf("%s bad line: %d %s (%v)", path, code, resp, err)
		}
	}
	st := s.Stats()
	want := PathStats{Lines: 6, BadLines: 6, BadRequests: 3, Bytes: 3 * int64(len(body))}
	if st.PathStats != want || st.V2.BadRequests != 1 {
		t.Errorf("stats %+v, want %+v", st.PathStats, want)
	}
}

func TestRequestErrors(t *testing.T) {
	s := startSink(t, Options{MaxBodyBytes: 1000})
	c := &http.Client{Timeout: 10 * time.Second}
	line := []byte("m f=1\n")
	cases := []struct {
		path string
		body []byte
		hdr  http.Header
		want int
	}{
		{"/write", line, nil, 400},
		{"/write?db=d&precision=xx", line, nil, 400},
		{"/api/v2/write?bucket=b", line, nil, 400},
		{"/api/v2/write?org=o", line, nil, 400},
		{"/api/v2/write?org=o&bucket=b&precision=h", line, nil, 400},
		{"/api/v2/write?org=o&bucket=b", nil, nil, 400},
		{"/api/v3/write_lp", line, nil, 400},
		{"/write?db=d", batch(100), nil, 413},
		{"/write?db=d", line, http.Header{"Content-Encoding": {"br"}}, 415},
		{"/write?db=d", nil, nil, 204},
		{"/nowhere", line, nil, 404},
	}
	for _, tc := range cases {
		if code, resp, _ := post(t, c, s.URL()+tc.path, tc.hdr, tc.body); code != tc.want {
			t.Errorf("POST %s: %d (%s), want %d", tc.path, code, resp, tc.want)
		}
	}
	resp, err := c.Get(s.URL() + "/write?db=d")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /write: %d, want 405", resp.StatusCode)
	}
	if st := s.Stats(); st.BadRequests != 10 || st.Writes != 1 {
		t.Errorf("stats %+v, want 10 bad requests, 1 write", st.PathStats)
	}
}

func TestPrecision(t *testing.T) {
	s := startSink(t, Options{})
	c := &http.Client{Timeout: 10 * time.Second}
	cases := []struct {
		path, body string
		want       int
	}{
		{"/write?db=d&precision=s", "m f=1 1700000000", 204},
		{"/write?db=d&precision=ms", "m f=1 1700000000000", 204},
		{"/write?db=d&precision=u", "m f=1 1700000000000000", 204},
		{"/write?db=d&precision=h", "m f=1 472222", 204},
		{"/write?db=d&precision=h", "m f=1 9000000000000", 400}, // overflows int64 ns
		{"/write?db=d&precision=s", "m f=1 9000000000000000000", 400},
		{"/write?db=d", "m f=1", 204}, // no timestamp: server time
		{"/api/v2/write?org=o&bucket=b&precision=s", "m f=1 1700000000", 204},
		{"/api/v3/write_lp?db=d", "m f=1 1700000000", 204},
		{"/api/v3/write_lp?db=d&precision=auto", "m f=1 1700000000000000000", 204},
		{"/api/v3/write_lp?db=d&precision=second", "m f=1 1700000000", 204},
	}
	for _, tc := range cases {
		if code, resp, _ := post(t, c, s.URL()+tc.path, nil, []byte(tc.body)); code != tc.want {
			t.Errorf("POST %s %q: %d (%s), want %d", tc.path, tc.body, code, resp, tc.want)
		}
	}
}

func TestPingHealth(t *testing.T) {
	s := startSink(t, Options{Version: "9.9.9"})
	c := &http.Client{Timeout: 10 * time.Second}
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequest(m, s.URL()+"/ping", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("X-Influxdb-Version") != "9.9.9" {
			t.Errorf("%s /ping: %d %v", m, resp.StatusCode, resp.Header)
		}
	}
	resp, err := c.Get(s.URL() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	err = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || h["status"] != "pass" {
		t.Errorf("/health: %d %v %v", resp.StatusCode, h, err)
	}
	if st := s.Stats(); st.Requests != 3 || st.Writes != 0 {
		t.Errorf("stats %+v", st)
	}
}

// serveDirect runs n v1 writes through the handler without a network and
// returns the status of each.
func serveDirect(s *Server, n int) []int {
	codes := make([]int, n)
	for i := range codes {
		req := httptest.NewRequest(http.MethodPost, "/write?db=d", strings.NewReader("m f=1\n"))
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		codes[i] = rec.Code
	}
	return codes
}

func TestErrorInjection(t *testing.T) {
	const n = 2000
	opts := Options{ErrorRate: 0.1, Seed: 42}
	a, b := serveDirect(New(opts), n), serveDirect(New(opts), n)
	other := serveDirect(New(Options{ErrorRate: 0.1, Seed: 43}), n)
	failed, differ := 0, false
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("write %d: %d then %d with the same seed", i, a[i], b[i])
		}
		if a[i] == http.StatusInternalServerError {
			failed++
		} else if a[i] != http.StatusNoContent {
			t.Fatalf("write %d: status %d", i, a[i])
		}
		differ = differ || a[i] != other[i]
	}
	if failed < n/10-60 || failed > n/10+60 {
		t.Errorf("%d of %d writes failed at rate 0.1", failed, n)
	}
	if !differ {
		t.Error("seeds 42 and 43 gave the same error sequence")
	}
	s := New(opts)
	serveDirect(s, n)
	if st := s.Stats(); st.Errors != int64(failed) || st.Lines != int64(n-failed) || st.Writes != int64(n-failed) {
		t.Errorf("stats %+v, want %d errors", st.PathStats, failed)
	}
	if codes := serveDirect(New(Options{ErrorRate: 1}), 5); codes[4] != http.StatusInternalServerError {
		t.Errorf("rate 1: %v", codes)
	}
}

func TestErrorInjectionHTTP(t *testing.T) {
	s := startSink(t, Options{ErrorRate: 0.5, Seed: 1})
	c := &http.Client{Timeout: 10 * time.Second}
	failed := 0
	for range 200 {
		code, resp, _ := post(t, c, s.URL()+"/api/v2/write?org=o&bucket=b", nil, []byte("m f=1"))
		switch code {
		case http.StatusInternalServerError:
			failed++
			if !strings.Contains(string(resp), `"code":"internal error"`) {
				t.Fatalf("500 body %s", resp)
			}
		case http.StatusNoContent:
		default:
			t.Fatalf("status %d", code)
		}
	}
	if st := s.Stats(); st.Errors != int64(failed) || failed < 60 || failed > 140 {
		t.Errorf("%d failed, stats %+v", failed, st.PathStats)
	}
}

func TestLatency(t *testing.T) {
	const lat = 60 * time.Millisecond
	s := startSink(t, Options{Latency: lat})
	c := &http.Client{Timeout: 10 * time.Second}
	start := time.Now()
	code, _, _ := post(t, c, s.URL()+"/write?db=d", nil, []byte("m f=1"))
	if took := time.Since(start); code != http.StatusNoContent || took < lat {
		t.Errorf("write took %v (status %d), want >= %v", took, code, lat)
	}
	// Latency applies to writes only: with an hour of it, a ping still
	// answers (within the client's bounded wait; no time limit on it).
	slow := startSink(t, Options{Latency: time.Hour})
	resp, err := c.Get(slow.URL() + "/ping")
	if err != nil {
		t.Fatalf("/ping with an hour of write latency: %v; latency applies to writes only", err)
	}
	resp.Body.Close()
}

func TestConnections(t *testing.T) {
	s := startSink(t, Options{})
	keep := &http.Client{Timeout: 10 * time.Second}
	for range 10 {
		post(t, keep, s.URL()+"/write?db=d", nil, []byte("m f=1"))
	}
	if st := s.Stats(); st.Connections != 1 || st.OpenConnections != 1 {
		t.Errorf("keep-alive: %d connections (%d open), want 1", st.Connections, st.OpenConnections)
	}
	perWrite := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 10 {
		post(t, perWrite, s.URL()+"/write?db=d", nil, []byte("m f=1"))
	}
	if st := s.Stats(); st.Connections != 11 || st.Writes != 20 {
		t.Errorf("per-write connections: %d connections, %d writes, want 11, 20", st.Connections, st.Writes)
	}
}

func TestIntercept(t *testing.T) {
	s := startSink(t, Options{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Query().Get("db") != "busy" {
			return false
		}
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		return true
	}})
	c := &http.Client{Timeout: 10 * time.Second}
	code, _, hdr := post(t, c, s.URL()+"/write?db=busy", nil, []byte("m f=1"))
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") != "7" {
		t.Errorf("intercepted: %d %v", code, hdr)
	}
	if code, _, _ := post(t, c, s.URL()+"/write?db=ok", nil, []byte("m f=1")); code != http.StatusNoContent {
		t.Errorf("not intercepted: %d", code)
	}
	if st := s.Stats(); st.Requests != 2 || st.Writes != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestAuth(t *testing.T) {
	s := startSink(t, Options{Username: "u", Password: "pw", Token: "tok"})
	c := &http.Client{Timeout: 10 * time.Second}
	cases := []struct {
		path string
		hdr  http.Header
		want int
	}{
		{"/write?db=d", nil, 401},
		{"/write?db=d&u=u&p=pw", nil, 204},
		{"/write?db=d&u=u&p=no", nil, 401},
		{"/write?db=d", http.Header{"Authorization": {"Token u:pw"}}, 204},
		{"/api/v2/write?org=o&bucket=b", nil, 401},
		{"/api/v2/write?org=o&bucket=b", http.Header{"Authorization": {"Token tok"}}, 204},
		{"/api/v3/write_lp?db=d", http.Header{"Authorization": {"Bearer tok"}}, 204},
		{"/api/v3/write_lp?db=d", http.Header{"Authorization": {"Bearer nope"}}, 401},
	}
	for _, tc := range cases {
		if code, resp, _ := post(t, c, s.URL()+tc.path, tc.hdr, []byte("m f=1")); code != tc.want {
			t.Errorf("POST %s %v: %d (%s), want %d", tc.path, tc.hdr, code, resp, tc.want)
		}
	}
}

func TestServeAndClose(t *testing.T) {
	s := New(Options{})
	if s.URL() != "" || s.Addr() != nil {
		t.Fatalf("before Serve: %q %v", s.URL(), s.Addr())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	for i := 0; i < 200 && s.Addr() == nil; i++ { // Serve records the address when it starts
		time.Sleep(10 * time.Millisecond)
	}
	if want := "http://" + ln.Addr().String(); s.URL() != want {
		t.Errorf("URL %q, want %q", s.URL(), want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepting after Close")
	}
}

func TestURLUnspecified(t *testing.T) {
	s := startSink(t, Options{})
	s2 := New(Options{})
	s2.addr.Store(&net.TCPAddr{IP: net.IPv6unspecified, Port: 8086})
	if got := s2.URL(); got != "http://127.0.0.1:8086" {
		t.Errorf("URL for [::]:8086 = %q", got)
	}
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Errorf("URL %q", s.URL())
	}
}

func TestQueryValue(t *testing.T) {
	q := "db=a%20b&rp=&precision=ms&db=second&b%75cket=x+y"
	for k, want := range map[string]string{"db": "a b", "rp": "", "precision": "ms", "bucket": "x y", "none": ""} {
		if got := queryValue(q, k); got != want {
			t.Errorf("queryValue(%q) = %q, want %q", k, got, want)
		}
	}
}

func TestNoPerLineAllocation(t *testing.T) {
	small, big := batch(10), batch(1000)
	p := precision{}
	now := time.Now()
	a10 := testing.AllocsPerRun(50, func() { decodeBody(small, p, now) })
	a1000 := testing.AllocsPerRun(50, func() { decodeBody(big, p, now) })
	if a1000 > a10 || a1000 > 3 {
		t.Errorf("allocations: %v for 10 lines, %v for 1000 lines", a10, a1000)
	}
}

func TestValidate(t *testing.T) {
	good := []Options{{}, {Latency: time.Millisecond, ErrorRate: 1}, {ErrorRate: 0.5}}
	for _, o := range good {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	bad := []Options{{Latency: -1}, {ErrorRate: -0.1}, {ErrorRate: 1.5}, {MaxBodyBytes: -1}, {IdleTimeout: -1}}
	for _, o := range bad {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestStatsString(t *testing.T) {
	st := Stats{PathStats: PathStats{Writes: 2, Lines: 200}, Connections: 1}
	if got := st.String(); !strings.Contains(got, "writes=2 lines=200") || !strings.Contains(got, "connections=1") {
		t.Errorf("String() = %q", got)
	}
}

func TestConcurrentWrites(t *testing.T) {
	s := startSink(t, Options{})
	const workers, writes = 8, 40
	tr := &http.Transport{MaxIdleConnsPerHost: workers} // the default 2 would churn
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	body := batch(25)
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			paths := []string{"/write?db=d", "/api/v2/write?org=o&bucket=b", "/api/v3/write_lp?db=d"}
			for i := range writes {
				resp, err := c.Post(s.URL()+paths[(w+i)%3], "text/plain", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Writes != workers*writes || st.Lines != workers*writes*25 || st.V1.Writes+st.V2.Writes+st.V3.Writes != st.Writes {
		t.Errorf("stats %+v", st)
	}
	// Keep-alive: 320 writes over about one connection per client. Go's
	// transport may dial an extra connection when a request starts before
	// the previous response's connection is back in its idle pool, so allow
	// twice the clients, far below one connection per write.
	if st.Connections > 2*workers {
		t.Errorf("%d connections for %d keep-alive clients and %d writes", st.Connections, workers, workers*writes)
	}
}
