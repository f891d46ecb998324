package results

import "sort"

// Error classes that a result's readers judge by name. loadgen, which
// counts them, defines its constants of the same names from these.
const (
	// ClassEADDRNOTAVAIL: connect() found no free local port toward the
	// destination.
	ClassEADDRNOTAVAIL = "EADDRNOTAVAIL"
	// ClassEADDRINUSE: bind() found the shared port pool used up.
	ClassEADDRINUSE = "EADDRINUSE"
	// ClassTimeout: loadcap's own write timeout fired.
	ClassTimeout = "timeout"
	// ClassNotStarted: the run ended before a worker could start the write.
	ClassNotStarted = "not_started"
)

// SortedClasses returns the error classes of m (a Target's Errors),
// most frequent first, ties by name.
func SortedClasses(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if m[out[i]] != m[out[j]] {
			return m[out[i]] > m[out[j]]
		}
		return out[i] < out[j]
	})
	return out
}
