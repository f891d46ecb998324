package kubernetes

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// sampleFlagEnv lists the LOADCAP_* variables of `loadcap sample`'s flags,
// read from cmd/loadcap/sample.go (EnvVars: []string{"LOADCAP_..."}).
func sampleFlagEnv(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "cmd", "loadcap", "sample.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`EnvVars: \[\]string\{"(LOADCAP_[A-Z0-9_]+)"\}`).FindAllSubmatch(b, -1) {
		out[string(m[1])] = true
	}
	if !out["LOADCAP_SAMPLE_LISTEN"] || !out["LOADCAP_SAMPLE_TOP"] {
		t.Fatalf("could not read the sample flags' variables from cmd/loadcap/sample.go: %v", out)
	}
	return out
}

// TestExporterDaemonSet checks the exporter DaemonSet: one pod per node in
// the node's network namespace, with no capability and no host mount, its
// --listen port published and probed, and only variables `loadcap sample`
// reads.
func TestExporterDaemonSet(t *testing.T) {
	m := load(t)
	ds, ok := m.daemonSets["loadcap-exporter"]
	if !ok {
		t.Fatal("no DaemonSet loadcap-exporter")
	}
	spec := ds.Spec.Template.Spec
	checkLabels(t, "DaemonSet template", ds.Spec.Template.Labels)
	if ds.Spec.Selector == nil || len(ds.Spec.Selector.MatchLabels) == 0 {
		t.Fatal("no selector")
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the template's labels", k, v)
		}
	}
	if !spec.HostNetwork {
		t.Error("hostNetwork: false: the exporter would sample its own pod's namespace, not the node's")
	}
	if spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q, want ClusterFirstWithHostNet with hostNetwork", spec.DNSPolicy)
	}
	if spec.HostPID || spec.HostIPC {
		t.Error("hostPID/hostIPC: not needed")
	}
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Error("pod must run as non-root")
	} else if len(sc.Sysctls) > 0 {
		t.Error("pod sysctls: the exporter only reads sysctls")
	}
	everyNode := false
	for _, tol := range spec.Tolerations {
		if tol.Key == "" && tol.Operator == corev1.TolerationOpExists {
			everyNode = true
		}
	}
	if !everyNode {
		t.Error("no toleration {operator: Exists}: tainted nodes would have no exporter")
	}
	if len(spec.Volumes) > 0 {
		t.Errorf("volumes %v: the exporter needs no host path or volume", spec.Volumes)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged != nil && *sc.Privileged ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container security: want no privilege escalation, read-only root, capabilities drop [ALL] and none added; got %+v", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("want a cpu request and a memory limit")
	}
	// args: sample --listen [HOST]:PORT, the port published as "metrics".
	var listen string
	for i, a := range c.Args {
		if a == "--listen" && i+1 < len(c.Args) {
			listen = c.Args[i+1]
		}
	}
	if len(c.Args) == 0 || c.Args[0] != "sample" || listen == "" {
		t.Fatalf("args %q: want sample --listen ADDR", c.Args)
	}
	_, ps, err := net.SplitHostPort(listen)
	port, perr := strconv.Atoi(ps)
	if err != nil || perr != nil {
		t.Fatalf("--listen %q: not HOST:PORT", listen)
	}
	published := false
	for _, p := range c.Ports {
		if p.Name == "metrics" && int(p.ContainerPort) == port && (p.HostPort == 0 || int(p.HostPort) == port) {
			published = true
		}
	}
	if !published {
		t.Errorf("port %d (--listen) is not the container port named metrics: %+v", port, c.Ports)
	}
	if ann := ds.Spec.Template.Annotations["prometheus.io/port"]; ann != ps {
		t.Errorf("annotation prometheus.io/port %q, --listen port %s", ann, ps)
	}
	for _, pr := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Port.String() != "metrics" {
			t.Errorf("probe %+v: want an httpGet on port metrics", pr)
		}
	}
	known := sampleFlagEnv(t)
	e := env(m, c)
	for k, v := range e {
		if !known[k] {
			t.Errorf("variable %s is not a loadcap sample flag's", k)
		}
		switch k {
		case "LOADCAP_SAMPLE_INTERVAL":
			if d, err := time.ParseDuration(v); err != nil || d <= 0 {
				t.Errorf("%s=%q: not a positive duration", k, v)
			}
		case "LOADCAP_SAMPLE_TOP", "LOADCAP_SAMPLE_PORT", "LOADCAP_SAMPLE_LOCAL_PORT":
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				t.Errorf("%s=%q: not a count", k, v)
			}
		}
	}
}

// TestDaemonSetStrictDecoding makes sure a misspelt or mistyped field of
// the DaemonSet would fail the decoding above.
func TestDaemonSetStrictDecoding(t *testing.T) {
	checkMutations(t, "exporter-daemonset.yaml", func() any { return &appsv1.DaemonSet{} }, []mutation{
		{"hostNetwork: true", "hostNetwrk: true"},                     // unknown field
		{"containerPort: 9869", "containerPort: metrics"},             // wrong type
		{"              memory: 128Mi", "              memory: lots"}, // bad quantity
	})
}
