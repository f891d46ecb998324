package capacity

import (
	"fmt"
	"time"

	"github.com/loadcap/loadcap/profiles"
)

// SurvivesIdle reports whether the pooled connections of client profile p
// survive a stateful firewall that silently drops a flow idle for longer than
// idle, and says why in one line. A connection survives when something sends
// a packet before the firewall forgets it: a pool heartbeat shorter than idle,
// or OS TCP keepalive whose first probe comes sooner (keepalive_idle, or the
// kernel's tcp_keepalive_time when the profile leaves it zero), or when the
// pool itself closes idle connections first (idle_timeout). Per-write clients
// keep no idle connection and are not affected.
//
// When the connections do not survive and the profile sets TCP_USER_TIMEOUT,
// the line also says that the first write on a dropped connection fails
// after the user timeout (ETIMEDOUT) rather than at the write timeout: no RST
// comes back, so without it only the write timeout detects the dead flow.
//
// It models the profile only: Go's net.Dialer enables TCP keepalive (15 s) by
// default, so the load engine must disable it for keepalive=false to mean off.
func SurvivesIdle(p *profiles.Client, k Kernel, idle time.Duration) (bool, string) {
	ok, why := survivesIdle(p, k, idle)
	if ut := p.UserTimeout.D(); !ok && ut > 0 {
		why += fmt.Sprintf("; TCP_USER_TIMEOUT %s fails the first write on a dropped connection after %s (ETIMEDOUT), not at the write timeout", ut, ut)
	}
	return ok, why
}

func survivesIdle(p *profiles.Client, k Kernel, idle time.Duration) (bool, string) {
	if !p.Pooled() {
		return true, "no idle connections: one connection per write"
	}
	if hb := p.Heartbeat.D(); hb > 0 && hb < idle {
		return true, fmt.Sprintf("pool heartbeat every %s is shorter than the %s idle timeout", hb, idle)
	}
	if p.KeepAlive {
		ka, src := p.KeepAliveIdle.D(), "keepalive_idle"
		if ka == 0 {
			ka, src = k.KeepAliveTime, "tcp_keepalive_time"
		}
		if ka < idle {
			return true, fmt.Sprintf("TCP keepalive probes after %s idle (%s), before the %s idle timeout", ka, src, idle)
		}
		if t := p.IdleTimeout.D(); t > 0 && t < idle {
			return true, fmt.Sprintf("the pool closes connections idle for %s, before the %s idle timeout", t, idle)
		}
		return false, fmt.Sprintf("TCP keepalive probes only after %s idle (%s), not before the %s idle timeout: the firewall drops idle connections silently", ka, src, idle)
	}
	if t := p.IdleTimeout.D(); t > 0 && t < idle {
		return true, fmt.Sprintf("the pool closes connections idle for %s, before the %s idle timeout", t, idle)
	}
	if hb := p.Heartbeat.D(); hb > 0 {
		return false, fmt.Sprintf("pool heartbeat every %s is not shorter than the %s idle timeout", hb, idle)
	}
	return false, fmt.Sprintf("no heartbeat, no TCP keepalive: idle connections are dropped silently after %s", idle)
}
