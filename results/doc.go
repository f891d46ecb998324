// Package results defines the loadcap result document (described field by field in docs/result-schema.md),
// and stores, loads, validates, compares and reports result files.
//
// A result document is written atomically (temporary file and rename) so that a
// reader never sees half a file, and a run interrupted by a signal still leaves
// a complete document marked Interrupted.
package results
