// Package prometheus holds the Prometheus rules (loadcap.rules.yml, with
// promtool unit tests in loadcap.rules.test.yml) and the Grafana dashboard
// (grafana-dashboard.json) for `loadcap sample --listen`, and the test that
// checks them: promtool check and test rules, every metric they name is one
// the exporter serves, and every PromQL expression parses in a real
// Prometheus. See docs/exporter.md.
package prometheus
