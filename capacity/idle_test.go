package capacity

import (
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/profiles"
)

// TCP_USER_TIMEOUT does not keep a connection alive, it only shortens the
// detection of a dead one: the verdict is that of the profile without it,
// and a dying pool's line says how the first write fails.
func TestSurvivesIdleUserTimeout(t *testing.T) {
	k := DefaultKernel()
	for _, c := range []struct {
		p    profiles.Client
		want bool
		why  string
	}{
		{profiles.Client{Conn: profiles.ConnPool, UserTimeout: profiles.Duration(time.Second)}, false,
			"no heartbeat, no TCP keepalive: idle connections are dropped silently after 7s; TCP_USER_TIMEOUT 1s fails the first write on a dropped connection after 1s (ETIMEDOUT), not at the write timeout"},
		{profiles.Client{Conn: profiles.ConnPool, KeepAlive: true, KeepAliveIdle: profiles.Duration(30 * time.Second), UserTimeout: profiles.Duration(2 * time.Second)}, false,
			"TCP_USER_TIMEOUT 2s fails the first write"},
		// A surviving pool needs no detection.
		{profiles.Client{Conn: profiles.ConnPool, Heartbeat: profiles.Duration(2 * time.Second), UserTimeout: profiles.Duration(time.Second)}, true,
			"pool heartbeat every 2s"},
		// Without a user timeout the line is unchanged.
		{profiles.Client{Conn: profiles.ConnPool}, false,
			"no heartbeat, no TCP keepalive: idle connections are dropped silently after 7s"},
	} {
		got, why := SurvivesIdle(&c.p, k, 7*time.Second)
		if got != c.want || !strings.Contains(why, c.why) {
			t.Errorf("%+v: %v %q; want %v and %q", c.p, got, why, c.want, c.why)
		}
		if mention := strings.Contains(why, "TCP_USER_TIMEOUT"); mention != (!got && c.p.UserTimeout > 0) {
			t.Errorf("%+v: %q: TCP_USER_TIMEOUT mentioned: %v", c.p, why, mention)
		}
	}
}
