// Package kubernetes holds loadcap's Kubernetes manifests (an Indexed Job
// that shards one fleet run over N pods, its ConfigMaps, the results volume,
// the merge Job, and the exporter DaemonSet) and the test that validates
// them offline: every manifest is decoded strictly into the k8s.io/api types (unknown or
// mistyped fields fail) and the fields a fleet run depends on are checked.
// See docs/fleet.md.
package kubernetes
