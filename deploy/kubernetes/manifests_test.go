package kubernetes

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/fleet"
	"github.com/loadcap/loadcap/profiles"
)

// manifests are the decoded objects of every *.yaml file here.
type manifests struct {
	configMaps map[string]*corev1.ConfigMap
	pvcs       map[string]*corev1.PersistentVolumeClaim
	jobs       map[string]*batchv1.Job
	pods       map[string]*corev1.Pod
	daemonSets map[string]*appsv1.DaemonSet
}

// splitDocs splits a multi-document YAML file on "---" lines.
func splitDocs(b []byte) [][]byte {
	var out [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			out = append(out, []byte(d))
		}
	}
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// strict decodes a YAML document into obj, failing on unknown fields,
// duplicate keys and mistyped values (the schema check).
func strict(doc []byte, obj any) error {
	return yaml.UnmarshalStrict(doc, obj)
}

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	m := &manifests{configMaps: map[string]*corev1.ConfigMap{}, pvcs: map[string]*corev1.PersistentVolumeClaim{}, jobs: map[string]*batchv1.Job{}, pods: map[string]*corev1.Pod{}, daemonSets: map[string]*appsv1.DaemonSet{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocs(b) {
			where := fmt.Sprintf("%s document %d", f, i+1)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var meta *metav1.ObjectMeta
			switch gvk := tm.APIVersion + "/" + tm.Kind; gvk {
			case "v1/ConfigMap":
				o := &corev1.ConfigMap{}
				err, meta = strict(doc, o), &o.ObjectMeta
				m.configMaps[o.Name] = o
			case "v1/PersistentVolumeClaim":
				o := &corev1.PersistentVolumeClaim{}
				err, meta = strict(doc, o), &o.ObjectMeta
				m.pvcs[o.Name] = o
			case "batch/v1/Job":
				o := &batchv1.Job{}
				err, meta = strict(doc, o), &o.ObjectMeta
				m.jobs[o.Name] = o
			case "apps/v1/DaemonSet":
				o := &appsv1.DaemonSet{}
				err, meta = strict(doc, o), &o.ObjectMeta
				m.daemonSets[o.Name] = o
			case "v1/Pod":
				o := &corev1.Pod{}
				err, meta = strict(doc, o), &o.ObjectMeta
				m.pods[o.Name] = o
			default:
				t.Fatalf("%s: unexpected kind %q", where, gvk)
			}
			if err != nil {
				t.Fatalf("%s (%s): %v", where, tm.Kind, err)
			}
			checkMeta(t, where, meta)
		}
	}
	return m
}

func checkMeta(t *testing.T, where string, m *metav1.ObjectMeta) {
	t.Helper()
	for _, e := range validation.IsDNS1123Subdomain(m.Name) {
		t.Errorf("%s: name %q: %s", where, m.Name, e)
	}
	checkLabels(t, where, m.Labels)
}

func checkLabels(t *testing.T, where string, labels map[string]string) {
	t.Helper()
	for k, v := range labels {
		for _, e := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
			t.Errorf("%s: label %s=%s: %s", where, k, v, e)
		}
	}
}

// runFlagEnv lists the LOADCAP_* variables of `loadcap run`'s flags, read
// from cmd/loadcap/run.go (every flag has env("NAME")).
func runFlagEnv(t *testing.T) map[string]bool {
	b, err := os.ReadFile(filepath.Join("..", "..", "cmd", "loadcap", "run.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`env\("([A-Z0-9_]+)"\)`).FindAllSubmatch(b, -1) {
		out["LOADCAP_"+string(m[1])] = true
	}
	if len(out) < 10 || !out["LOADCAP_SHARD"] || !out["LOADCAP_START_AT"] {
		t.Fatalf("could not read the run flags' variables from cmd/loadcap/run.go: %v", out)
	}
	return out
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkPod checks a pod spec against the other manifests: volumes, mounts,
// ConfigMap and PVC references, $(VAR) references, security settings.
func checkPod(t *testing.T, where string, m *manifests, spec *corev1.PodSpec) {
	t.Helper()
	if spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("%s: restartPolicy %q, want Never", where, spec.RestartPolicy)
	}
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("%s: pod must run as non-root (runAsNonRoot: true, runAsUser not 0)", where)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
		switch {
		case v.ConfigMap != nil:
			cm, ok := m.configMaps[v.ConfigMap.Name]
			if !ok {
				t.Errorf("%s: volume %s: no ConfigMap %s", where, v.Name, v.ConfigMap.Name)
			}
			for _, it := range v.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; !ok {
					t.Errorf("%s: volume %s: ConfigMap %s has no key %s", where, v.Name, v.ConfigMap.Name, it.Key)
				}
			}
		case v.PersistentVolumeClaim != nil:
			if _, ok := m.pvcs[v.PersistentVolumeClaim.ClaimName]; !ok {
				t.Errorf("%s: volume %s: no PersistentVolumeClaim %s", where, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		case v.EmptyDir != nil:
		default:
			t.Errorf("%s: volume %s: unexpected source", where, v.Name)
		}
	}
	if len(spec.Containers) == 0 {
		t.Fatalf("%s: no container", where)
	}
	for _, c := range spec.Containers {
		cw := where + " container " + c.Name
		for _, e := range validation.IsDNS1123Label(c.Name) {
			t.Errorf("%s: name: %s", cw, e)
		}
		if c.Image == "" {
			t.Errorf("%s: no image", cw)
		}
		if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: want allowPrivilegeEscalation: false and capabilities drop [ALL] (no lab mode in the fleet)", cw)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: want a cpu request and a memory limit", cw)
		}
		for _, vm := range c.VolumeMounts {
			if _, ok := volumes[vm.Name]; !ok {
				t.Errorf("%s: mount %s: no such volume", cw, vm.Name)
			}
			if !filepath.IsAbs(vm.MountPath) {
				t.Errorf("%s: mount %s: path %q not absolute", cw, vm.Name, vm.MountPath)
			}
		}
		// Variables visible to $(VAR) expansion: envFrom, then env in order.
		defined := map[string]bool{}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef == nil {
				t.Errorf("%s: envFrom other than a ConfigMap", cw)
				continue
			}
			cm, ok := m.configMaps[ef.ConfigMapRef.Name]
			if !ok {
				t.Errorf("%s: envFrom: no ConfigMap %s", cw, ef.ConfigMapRef.Name)
				continue
			}
			for k := range cm.Data {
				for _, e := range validation.IsEnvVarName(k) {
					t.Errorf("%s: envFrom %s: key %s is not a variable name (the kubelet skips it): %s", cw, cm.Name, k, e)
				}
				defined[k] = true
			}
		}
		refs := func(what, s string) {
			for _, r := range varRef.FindAllStringSubmatch(s, -1) {
				if !defined[r[1]] {
					t.Errorf("%s: %s refers to $(%s), not defined before it (it would stay literal)", cw, what, r[1])
				}
			}
		}
		for _, e := range c.Env {
			for _, msg := range validation.IsEnvVarName(e.Name) {
				t.Errorf("%s: env %s: %s", cw, e.Name, msg)
			}
			refs("env "+e.Name, e.Value)
			if vf := e.ValueFrom; vf != nil && vf.ConfigMapKeyRef != nil {
				cm, ok := m.configMaps[vf.ConfigMapKeyRef.Name]
				if !ok {
					t.Errorf("%s: env %s: no ConfigMap %s", cw, e.Name, vf.ConfigMapKeyRef.Name)
				} else if _, ok := cm.Data[vf.ConfigMapKeyRef.Key]; !ok {
					t.Errorf("%s: env %s: ConfigMap %s has no key %s", cw, e.Name, cm.Name, vf.ConfigMapKeyRef.Key)
				}
			}
			defined[e.Name] = true
		}
		for _, a := range c.Args {
			refs("args", a)
		}
	}
}

// env returns the container's environment as the pod would see it, before
// fieldRef values: envFrom ConfigMaps, then env values with $(VAR) expanded.
func env(m *manifests, c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			for k, v := range m.configMaps[ef.ConfigMapRef.Name].Data {
				out[k] = v
			}
		}
	}
	for _, e := range c.Env {
		if vf := e.ValueFrom; vf != nil && vf.ConfigMapKeyRef != nil {
			if cm, ok := m.configMaps[vf.ConfigMapKeyRef.Name]; ok {
				out[e.Name] = cm.Data[vf.ConfigMapKeyRef.Key]
			}
			continue
		}
		out[e.Name] = varRef.ReplaceAllStringFunc(e.Value, func(s string) string { return out[s[2:len(s)-1]] })
	}
	return out
}

func TestManifests(t *testing.T) {
	m := load(t)
	for _, name := range []string{"loadcap-run", "loadcap-profiles"} {
		if _, ok := m.configMaps[name]; !ok {
			t.Fatalf("no ConfigMap %s", name)
		}
	}
	for n, cm := range m.configMaps {
		for k := range cm.Data {
			for _, e := range validation.IsConfigMapKey(k) {
				t.Errorf("ConfigMap %s: key %q: %s", n, k, e)
			}
		}
	}
	for n, p := range m.pvcs {
		if len(p.Spec.AccessModes) != 1 || p.Spec.AccessModes[0] != corev1.ReadWriteMany {
			t.Errorf("PVC %s: access modes %v: the shards run on different nodes, want ReadWriteMany", n, p.Spec.AccessModes)
		}
		if p.Spec.Resources.Requests.Storage().IsZero() {
			t.Errorf("PVC %s: no storage request", n)
		}
	}
	for n, j := range m.jobs {
		checkLabels(t, "Job "+n+" template", j.Spec.Template.Labels)
		checkPod(t, "Job "+n, m, &j.Spec.Template.Spec)
		if j.Spec.BackoffLimit == nil || *j.Spec.BackoffLimit != 0 {
			t.Errorf("Job %s: want backoffLimit 0 (a retried shard or merge would not be part of the same run)", n)
		}
		if j.Spec.ActiveDeadlineSeconds == nil {
			t.Errorf("Job %s: want an activeDeadlineSeconds bound", n)
		}
	}
	for n, p := range m.pods {
		checkPod(t, "Pod "+n, m, &p.Spec)
		if p.Spec.ActiveDeadlineSeconds == nil {
			t.Errorf("Pod %s: want an activeDeadlineSeconds bound", n)
		}
	}
}

// TestFleetJob checks what a sharded fleet run depends on.
func TestFleetJob(t *testing.T) {
	m := load(t)
	j, ok := m.jobs["loadcap-fleet"]
	if !ok {
		t.Fatal("no Job loadcap-fleet")
	}
	s := j.Spec
	if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion {
		t.Errorf("completionMode %v, want Indexed (JOB_COMPLETION_INDEX is the shard)", s.CompletionMode)
	}
	if s.Completions == nil || s.Parallelism == nil || *s.Completions != *s.Parallelism || *s.Completions < 1 {
		t.Fatalf("completions %v parallelism %v: want equal (every shard runs at once)", s.Completions, s.Parallelism)
	}
	n := int(*s.Completions)
	spec := s.Template.Spec
	c := spec.Containers[0]
	e := env(m, c)
	if got, _ := strconv.Atoi(e[fleet.EnvShards]); got != n {
		t.Errorf("%s=%q, want the Job's completions %d", fleet.EnvShards, e[fleet.EnvShards], n)
	}
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Fatalf("args %q: want loadcap run", c.Args)
	}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--shard") {
			t.Errorf("args %q: --shard must come from JOB_COMPLETION_INDEX, not a fixed flag", c.Args)
		}
	}
	if !strings.Contains(strings.Join(c.Args, " "), "--json") {
		t.Errorf("args %q: want --json so that kubectl logs has each shard's result", c.Args)
	}
	// Every LOADCAP_* variable must be one that loadcap run reads.
	known := runFlagEnv(t)
	known["LOADCAP_SHARDS"] = true // read with JOB_COMPLETION_INDEX
	known["LOADCAP_RUN"] = true    // this deployment's own: names the results directory
	var vars []string
	for k := range e {
		if strings.HasPrefix(k, "LOADCAP_") {
			vars = append(vars, k)
			if !known[k] {
				t.Errorf("variable %s is not a loadcap run flag's", k)
			}
		}
	}
	sort.Strings(vars)
	t.Logf("shards %d; loadcap run variables: %s", n, strings.Join(vars, " "))
	if _, err := capacity.ParseRate(e["LOADCAP_RATE"]); err != nil {
		t.Errorf("LOADCAP_RATE: %v", err)
	}
	if _, err := fleet.ParseStartAt(e["LOADCAP_START_AT"]); err != nil {
		t.Errorf("LOADCAP_START_AT: %v", err)
	}
	if e["LOADCAP_HOST"] == "" || !strings.HasPrefix(e["LOADCAP_OUT"], "/results/") {
		t.Errorf("LOADCAP_HOST %q LOADCAP_OUT %q: want a host label and results on the volume", e["LOADCAP_HOST"], e["LOADCAP_OUT"])
	}
	mounted := false
	for _, vm := range c.VolumeMounts {
		if strings.HasPrefix(e["LOADCAP_OUT"], vm.MountPath+"/") && !vm.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("LOADCAP_OUT %s is not on a writable volume mount", e["LOADCAP_OUT"])
	}
	// The client profile: a file from the profiles ConfigMap that parses.
	client := e["LOADCAP_CLIENT"]
	if filepath.IsAbs(client) {
		found := false
		for _, vm := range c.VolumeMounts {
			dir, key := filepath.Dir(client), filepath.Base(client)
			if vm.MountPath != dir {
				continue
			}
			for _, v := range spec.Volumes {
				if v.Name == vm.Name && v.ConfigMap != nil {
					data, ok := m.configMaps[v.ConfigMap.Name].Data[key]
					if !ok {
						t.Fatalf("LOADCAP_CLIENT %s: ConfigMap %s has no key %s", client, v.ConfigMap.Name, key)
					}
					if _, err := profiles.ParseClient(client, strings.TrimSuffix(key, ".toml"), []byte(data)); err != nil {
						t.Errorf("LOADCAP_CLIENT %s: %v", client, err)
					}
					found = true
				}
			}
		}
		if !found {
			t.Errorf("LOADCAP_CLIENT %s is not in a mounted ConfigMap", client)
		}
	} else if _, err := profiles.LoadClient(client); err != nil {
		t.Errorf("LOADCAP_CLIENT %s: %v", client, err)
	}
	// hostNetwork: with it the pods of a node share its port budget, so
	// one per node (required anti-affinity), and the DNS policy that keeps
	// cluster names resolvable.
	sel := map[string]string{}
	if a := spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			if term.TopologyKey == "kubernetes.io/hostname" && term.LabelSelector != nil {
				sel = term.LabelSelector.MatchLabels
			}
		}
	}
	if len(sel) == 0 {
		t.Errorf("no required pod anti-affinity on kubernetes.io/hostname: two shards on one node share its CPU (and with hostNetwork its port budget)")
	}
	for k, v := range sel {
		if s.Template.Labels[k] != v {
			t.Errorf("anti-affinity selects %s=%s, which the pods do not carry", k, v)
		}
	}
	if spec.HostNetwork && spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork with dnsPolicy %q: want ClusterFirstWithHostNet", spec.DNSPolicy)
	}
	if spec.HostNetwork && spec.SecurityContext != nil && len(spec.SecurityContext.Sysctls) > 0 {
		t.Errorf("hostNetwork with pod sysctls: net.* sysctls are refused for pods in the node's namespace")
	}
}

// TestMergeJob checks the merge step: it reads the fleet's results
// directory from the same volume.
func TestMergeJob(t *testing.T) {
	m := load(t)
	j, ok := m.jobs["loadcap-merge"]
	if !ok {
		t.Fatal("no Job loadcap-merge")
	}
	fj := m.jobs["loadcap-fleet"]
	c := j.Spec.Template.Spec.Containers[0]
	e := env(m, c)
	args := varRef.ReplaceAllStringFunc(strings.Join(c.Args, " "), func(s string) string { return e[s[2:len(s)-1]] })
	fo := env(m, fj.Spec.Template.Spec.Containers[0])["LOADCAP_OUT"]
	if !strings.HasPrefix(args, "merge "+fo+" ") || !strings.Contains(args, "-o -") {
		t.Errorf("merge args %q: want merge %s -o - (the fleet's results, merged document on stdout)", args, fo)
	}
	claim := func(spec corev1.PodSpec) string {
		for _, v := range spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				return v.PersistentVolumeClaim.ClaimName
			}
		}
		return ""
	}
	if a, b := claim(j.Spec.Template.Spec), claim(fj.Spec.Template.Spec); a == "" || a != b {
		t.Errorf("merge reads claim %q, the fleet writes %q", a, b)
	}
}

// TestStrictDecodingCatchesMistakes makes sure the validation above would
// notice the usual manifest mistakes.
func TestStrictDecodingCatchesMistakes(t *testing.T) {
	checkMutations(t, "job.yaml", func() any { return &batchv1.Job{} }, []mutation{
		{"completionMode: Indexed", "completionMod: Indexed"},       // unknown field
		{"parallelism: 3", "parallelism: three"},                    // wrong type
		{"      restartPolicy: Never", "      restartPolicy: [1]"},  // wrong type
		{"              memory: 1Gi", "              memory: lots"}, // bad quantity
	})
}

// mutation replaces the first from in a manifest with to.
type mutation struct{ from, to string }

// checkMutations applies each mutation to the first document of file and
// checks that strict decoding into a fresh obj() then fails.
func checkMutations(t *testing.T, file string, obj func() any, ms []mutation) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ms {
		bad := bytes.Replace(b, []byte(c.from), []byte(c.to), 1)
		if bytes.Equal(bad, b) {
			t.Fatalf("%q not in %s", c.from, file)
		}
		if err := strict(splitDocs(bad)[0], obj()); err == nil {
			t.Errorf("%s: %q -> %q: decoded without error", file, c.from, c.to)
		}
	}
}
