package testservers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Environment variables of the Prometheus scripts/testenv.sh starts.
const (
	// EnvPrometheus is its base URL ("http://127.0.0.1:19090").
	EnvPrometheus = "LOADCAP_TEST_PROMETHEUS"
	// EnvPrometheusTargets is the directory of file_sd target files it
	// scrapes every second.
	EnvPrometheusTargets = "LOADCAP_TEST_PROMETHEUS_TARGETS"
)

// Prometheus returns the base URL of the test Prometheus and the directory
// its scrape targets are announced in. It skips the test when they are not
// configured, or fails it when servers are required.
func Prometheus(t testing.TB) (baseURL, targetsDir string) {
	t.Helper()
	baseURL, targetsDir = os.Getenv(EnvPrometheus), os.Getenv(EnvPrometheusTargets)
	if baseURL == "" || targetsDir == "" {
		missing(t, EnvPrometheus+" and "+EnvPrometheusTargets)
	}
	return strings.TrimRight(baseURL, "/"), targetsDir
}

// AnnounceTarget makes the test Prometheus scrape addr (host:port) with the
// given extra target labels, by writing a file_sd file named after the test
// into targetsDir; the file is removed when the test ends (Prometheus then
// stops scraping it).
func AnnounceTarget(t testing.TB, targetsDir, addr string, labels map[string]string) {
	t.Helper()
	doc := []map[string]any{{"targets": []string{addr}, "labels": labels}}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	path := filepath.Join(targetsDir, fmt.Sprintf("%s-%d.json", name, os.Getpid()))
	// Write then rename, so that Prometheus never reads half a file.
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		t.Fatalf("announce target: %v", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatalf("announce target: %v", err)
	}
	t.Cleanup(func() { os.Remove(path) })
}

// PromSample is one element of an instant vector.
type PromSample struct {
	Labels map[string]string
	Value  float64
}

// PromQuery runs an instant PromQL query and returns the vector; any error
// (including a non-vector result) fails t.
func PromQuery(t testing.TB, baseURL, query string) []PromSample {
	t.Helper()
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	promGet(t, baseURL, "/api/v1/query?"+url.Values{"query": {query}}.Encode(), &data)
	if data.ResultType != "vector" {
		t.Fatalf("prometheus query %q: result type %q, want vector", query, data.ResultType)
	}
	out := make([]PromSample, 0, len(data.Result))
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("prometheus query %q: value %v: %v", query, r.Value[1], err)
		}
		out = append(out, PromSample{Labels: r.Metric, Value: v})
	}
	return out
}

// PromAlert is one alert of /api/v1/alerts.
type PromAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"` // pending or firing
}

// PromAlerts returns the alerts pending or firing now.
func PromAlerts(t testing.TB, baseURL string) []PromAlert {
	t.Helper()
	var data struct {
		Alerts []PromAlert `json:"alerts"`
	}
	promGet(t, baseURL, "/api/v1/alerts", &data)
	return data.Alerts
}

// promGet GETs an API path and decodes the "data" of a success answer.
func promGet(t testing.TB, baseURL, path string, data any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("prometheus %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatalf("prometheus %s: read answer: %v", path, err)
	}
	var ans struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &ans); err != nil || ans.Status != "success" {
		t.Fatalf("prometheus %s: status %d: %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(ans.Data, data); err != nil {
		t.Fatalf("prometheus %s: decode data: %v", path, err)
	}
}
