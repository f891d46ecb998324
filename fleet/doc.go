// Package fleet runs one capacity test across many client hosts and puts
// the results back together.
//
// A fleet run is one `loadcap run` per host, each with --shard I/N: shard I
// paces the fleet's rate divided by N and writes its own part of the series
// space (see loadgen.GenConfig.Shard), and every shard waits for a common
// --start-at time so that their windows line up. Kubernetes runs the shards
// as an Indexed Job (deploy/kubernetes); `loadcap merge` (Merge) turns their
// result files into one document: counts summed, HdrHistograms merged
// exactly, sampler series aligned on wall-clock time with each host kept
// apart, per-host capacity figures side by side and the fleet's derived
// from them.
//
// Everything here is pure: no I/O but what the caller hands in.
package fleet
