package profiles

import "testing"

// Only bind before connect makes the targets share one pool of ports:
// connect() and IP_BIND_ADDRESS_NO_PORT pick the port per destination
// (verified on this kernel in lab.TestFactD_TwoTargets).
func TestSharesPorts(t *testing.T) {
	for mode, want := range map[string]bool{"": false, DialConnect: false, DialBind: true, DialBindNoPort: false} {
		if got := (&Client{DialMode: mode}).SharesPorts(); got != want {
			t.Errorf("dial mode %q: SharesPorts %v, want %v", mode, got, want)
		}
	}
}
