package capacity

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseRate parses a rate such as "500", "1.5k", "50k" or "2m" (k = 1e3,
// m = 1e6), optionally followed by "/s". The result must be positive.
func ParseRate(s string) (float64, error) {
	v := strings.TrimSpace(strings.ToLower(s))
	v = strings.TrimSuffix(v, "/s")
	mult := 1.0
	switch {
	case strings.HasSuffix(v, "k"):
		mult, v = 1e3, v[:len(v)-1]
	case strings.HasSuffix(v, "m"):
		mult, v = 1e6, v[:len(v)-1]
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || v == "" || strings.ContainsAny(v, "xXpPeE_") {
		return 0, fmt.Errorf("bad rate %q: want a number of writes per second like 500, 1.5k or 50k", s)
	}
	f *= mult
	if !(f > 0) || f > 1e9 {
		return 0, fmt.Errorf("bad rate %q: must be above 0 and at most 1000m", s)
	}
	return f, nil
}
