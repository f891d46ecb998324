// Package loadgen is loadcap's load engine: an open-model pacer (vegeta's
// pacers) feeding a bounded pool of workers per target, a deterministic
// line-protocol generator, HTTP drivers for the InfluxDB v1, v2 and v3 write
// APIs with their own connection pool and dialer (so that every connection the
// client opens is counted and shaped by a client profile), and per-worker
// HdrHistograms merged at the end.
//
// Latency is measured from each write's intended start time, so a write that
// waited for a free worker carries its waiting time (no coordinated omission);
// service time, from the actual start, is kept beside it. Failures are data:
// every error is classified (by errno, timeout or HTTP status) and counted.
package loadgen
