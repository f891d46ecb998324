package capacity

import (
	"fmt"
	"strings"
	"testing"
)

// ParseRate: the accepted spellings and the refused ones, each error
// naming the value.
func TestParseRate(t *testing.T) {
	good := map[string]float64{"500": 500, "1k": 1000, "1.5k": 1500, "50K": 50000, "2m": 2e6, "0.5": 0.5, "300/s": 300}
	for in, want := range good {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"abc", "", "0", "-5", "1e3", "k", "NaN", "inf", "0x10", "5 k", "2000m"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q): no error", in)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("ParseRate(%q): error %q does not name the value", in, err)
		}
	}
}
