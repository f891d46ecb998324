package profiles

import "fmt"

// conntrackMessage explains a conntrack key for `profiles lint`: what it
// does on a translator (measured in the NAT lab, docs/nat.md).
func conntrackMessage(key string, n int) string {
	const where = "acts on a translator's connection tracking (set it on the NAT host or Kubernetes node), not on this client's own ports; "
	switch key {
	case "net.netfilter.nf_conntrack_tcp_timeout_time_wait":
		return where + fmt.Sprintf("a closed flow's entry stays %d s (default 120, not 60). On this kernel a new flow evicts a TIME_WAIT entry when the translated ports run out, so it bounds the table's use, not the translated ports; on kernels without that eviction every closed flow holds its translated port this long", n)
	case "net.netfilter.nf_conntrack_tcp_timeout_close":
		return where + fmt.Sprintf("a flow closed by a RST (SO_LINGER 0) keeps its entry %d s (default 10); evicted like TIME_WAIT when ports run out", n)
	case "net.netfilter.nf_conntrack_tcp_timeout_established":
		return where + fmt.Sprintf("an idle established flow is forgotten after %d s (default 432000, 5 days); a firewall's idle timeout (see --lab-firewall-idle)", n)
	case "net.netfilter.nf_conntrack_tcp_loose":
		return where + "1 (default) picks up flows seen in mid-stream; 0 drops their segments as invalid. No measured effect on the translated port budget"
	case "net.netfilter.nf_conntrack_tcp_be_liberal":
		return where + "1 accepts out-of-window segments instead of marking them invalid; no measured effect on the translated port budget"
	case "net.netfilter.nf_conntrack_max":
		return where + fmt.Sprintf("at most %d tracked flows, global (read-only inside a network namespace); when full new flows are dropped (early_drop first evicts unassured entries) and clients see connect timeouts", n)
	case "net.netfilter.nf_conntrack_buckets":
		return where + "the table's hash size; global, read-only inside a network namespace"
	}
	return where
}
