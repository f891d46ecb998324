// Package export writes a run's standard exports for the tools users
// already have, while the run goes: an HdrHistogram interval log (one
// interval histogram per second per target, in µs, tagged with the
// target's name; HdrHistogram's log tools and hdrhistogram-go read it) and
// every write's result in vegeta's encoding (vegeta report and vegeta plot
// read it).
//
// A worker never waits on an export: records go through bounded buffers
// to one writer goroutine per file, and a full buffer drops the record and
// counts it; Close says how many were dropped, in sentences for the
// result's notes.
package export
