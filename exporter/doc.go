// Package exporter serves what `loadcap sample` measures to Prometheus
// (`loadcap sample --listen ADDR`): per destination ip:port the sockets by
// TCP state, the local ports in use and still available by the kernel's
// rule, the rate at which closed connections take ports out of the pool,
// TIME_WAIT age quantiles, the projected exhaustion rate and the headroom;
// host-wide the kernel TCP counters and the sysctls the projection used.
//
// An Exporter samples on its own cadence (sampler.Pace, within the
// sampler's CPU budget); a scrape serves the latest sample and never dumps
// sockets. Cardinality is bounded: the top N destinations by ports in use
// get their own series and the rest are summed under destination="other".
//
// build (a snapshot into a State) and collectState (a State into metrics)
// are pure; Exporter does the sampling and serving. See docs/exporter.md.
package exporter
