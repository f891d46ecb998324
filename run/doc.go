// Package run orchestrates one `loadcap run`: it validates the configuration
// before any traffic is sent, starts the embedded sink when asked, opens the
// drivers, samples socket states while the engine drives the load, applies
// the capacity model to what was measured, and builds and saves the result
// document. cmd/loadcap only turns flags into a Config and prints.
package run
