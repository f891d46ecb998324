package results

import (
	"reflect"
	"testing"
)

// SortedClasses: most frequent first, ties by name; an empty map gives an
// empty list.
func TestSortedClasses(t *testing.T) {
	cases := []struct {
		in   map[string]int64
		want []string
	}{
		{nil, []string{}},
		{map[string]int64{ClassTimeout: 3}, []string{ClassTimeout}},
		{map[string]int64{ClassTimeout: 3, ClassEADDRNOTAVAIL: 9, ClassNotStarted: 1}, []string{ClassEADDRNOTAVAIL, ClassTimeout, ClassNotStarted}},
		{map[string]int64{"http_5xx": 2, ClassEADDRINUSE: 2, "EOF": 2}, []string{ClassEADDRINUSE, "EOF", "http_5xx"}},
	}
	for _, c := range cases {
		if got := SortedClasses(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("SortedClasses(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
