package profiles

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeFiles writes name -> content under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A profiles directory holds NAME.toml client and NAME.conf sysctl
// profiles, found by their bare name after the built-ins.
func TestLoaderDirResolvesByName(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"batchy.toml":  "description = \"pool of 4\"\nconn = \"pool\"\npool_size = 4\nidle_size = 4\n",
		"tight.conf":   "# a tiny range\nnet.ipv4.ip_local_port_range = 40000 40999\nnet.ipv4.tcp_tw_reuse = 1\n",
		"README.md":    "not a profile",
		"notes.toml~":  "an editor backup, not a profile",
		".hidden.toml": "conn = \"bogus\"\n",
		"old.conf.bak": "net.ipv4.tcp_tw_reuse = 0\n",
	})
	if err := os.Mkdir(filepath.Join(dir, "nested.toml"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := Loader{Dir: dir}
	c, err := l.LoadClient("batchy")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "batchy" || c.PoolSize != 4 || c.Description != "pool of 4" {
		t.Errorf("batchy = %+v", c)
	}
	s, err := l.LoadSysctl("tight")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "tight" || s.Source != filepath.Join(dir, "tight.conf") || s.Map()["net.ipv4.ip_local_port_range"] != "40000 40999" {
		t.Errorf("tight = %+v", s)
	}
	// A client name is not a sysctl profile and the other way round.
	if _, err := l.LoadSysctl("batchy"); err == nil || !strings.Contains(err.Error(), "not in "+dir) {
		t.Errorf("LoadSysctl(batchy) = %v, want not found naming the directory", err)
	}
	// Built-ins still load, and "host" is still the live profile.
	if _, err := l.LoadClient("keepalive"); err != nil {
		t.Error(err)
	}
	if s, err := l.LoadSysctl(HostProfile); err != nil || s.Source != "/proc/sys" {
		t.Errorf("host: %v %+v", err, s)
	}
	// List: built-ins with source "builtin", the directory's files with
	// their path; other files, hidden files and directories are ignored.
	ls, err := l.List()
	if err != nil {
		t.Fatal(err)
	}
	var user []Listed
	for _, p := range ls {
		if p.Source != SourceBuiltin {
			user = append(user, p)
		}
	}
	want := []Listed{
		{Kind: KindClient, Name: "batchy", Source: filepath.Join(dir, "batchy.toml")},
		{Kind: KindSysctl, Name: "tight", Source: filepath.Join(dir, "tight.conf")},
	}
	if !slices.Equal(user, want) {
		t.Errorf("user profiles = %+v\nwant %+v", user, want)
	}
	if len(ls) != len(ClientNames())+len(SysctlNames())+len(want) {
		t.Errorf("List has %d entries: %+v", len(ls), ls)
	}
	names, err := l.Names(KindClient)
	if err != nil || !slices.Contains(names, "batchy") || !slices.Contains(names, "keepalive") || !slices.IsSorted(names) {
		t.Errorf("Names(client) = %v, %v", names, err)
	}
	// Without a directory the lookup is the built-ins, then a path.
	if _, err := (Loader{}).LoadClient("batchy"); err == nil || !strings.Contains(err.Error(), "not a built-in") {
		t.Errorf("no dir: LoadClient(batchy) = %v", err)
	}
	if _, err := (Loader{}).LoadClient(filepath.Join(dir, "batchy.toml")); err != nil {
		t.Errorf("by path: %v", err)
	}
}

// A bad file in the directory, loaded by name, gives the one-line
// file:line:key error of any profile file.
func TestLoaderDirBadFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"typo.toml":  "conn = \"pool\"\npool_sise = 3\n",
		"range.conf": "# x\n\nnet.ipv4.ip_local_port_range = 60999 32768\n",
		"value.conf": "net.ipv4.tcp_tw_reuse = yes\n",
	})
	l := Loader{Dir: dir}
	cases := []struct {
		load  func(string) error
		name  string
		wants []string
	}{
		{func(n string) error { _, err := l.LoadClient(n); return err }, "typo",
			[]string{filepath.Join(dir, "typo.toml") + ":2:", `key "pool_sise"`, "unknown key"}},
		{func(n string) error { _, err := l.LoadSysctl(n); return err }, "range",
			[]string{filepath.Join(dir, "range.conf") + ":3:", `key "net.ipv4.ip_local_port_range"`, "low 60999 is above high 32768"}},
		{func(n string) error { _, err := l.LoadSysctl(n); return err }, "value",
			[]string{filepath.Join(dir, "value.conf") + ":1:", `key "net.ipv4.tcp_tw_reuse"`, `"yes"`}},
	}
	for _, c := range cases {
		err := c.load(c.name)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error spans lines: %q", c.name, err)
		}
		for _, w := range c.wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
	}
	// A directory that does not exist is named when a lookup reaches it.
	if _, err := (Loader{Dir: filepath.Join(dir, "nope")}).LoadClient("mine"); err == nil || !strings.Contains(err.Error(), "no such directory") {
		t.Errorf("missing dir: %v", err)
	}
	if _, err := (Loader{Dir: filepath.Join(dir, "nope")}).List(); err == nil || !strings.Contains(err.Error(), "no such directory") {
		t.Errorf("missing dir list: %v", err)
	}
	// ... but built-ins do not need it.
	if _, err := (Loader{Dir: filepath.Join(dir, "nope")}).LoadClient("keepalive"); err != nil {
		t.Errorf("built-in with a missing dir: %v", err)
	}
}

// A file named like a built-in does not replace it: the built-in wins (so
// `--client keepalive` means the same everywhere), loading the name warns,
// List marks the file shadowed, and the file still loads by its path.
func TestLoaderDirShadowedByBuiltin(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"keepalive.toml": "conn = \"pool\"\npool_size = 3\nidle_size = 3\n",
		"tw-reuse.conf":  "net.ipv4.tcp_tw_reuse = 0\n",
	})
	var warn bytes.Buffer
	l := Loader{Dir: dir, Warn: &warn}
	c, err := l.LoadClient("keepalive")
	if err != nil {
		t.Fatal(err)
	}
	if c.PoolSize != 64 {
		t.Errorf("keepalive pool_size %d: the directory's file won over the built-in", c.PoolSize)
	}
	s, err := l.LoadSysctl("tw-reuse")
	if err != nil || s.Map()["net.ipv4.tcp_tw_reuse"] != "1" {
		t.Errorf("tw-reuse = %+v, %v: want the built-in", s, err)
	}
	lines := strings.Split(strings.TrimSpace(warn.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], filepath.Join(dir, "keepalive.toml")+" is shadowed by the built-in client profile") ||
		!strings.Contains(lines[1], filepath.Join(dir, "tw-reuse.conf")+" is shadowed by the built-in sysctl profile") {
		t.Errorf("warnings:\n%s", warn.String())
	}
	ls, err := l.List()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ls, func(p Listed) bool { return p.Kind == KindClient && p.Name == "keepalive" })
	if i < 0 || i+1 >= len(ls) || ls[i].Source != SourceBuiltin ||
		ls[i+1] != (Listed{Kind: KindClient, Name: "keepalive", Source: filepath.Join(dir, "keepalive.toml"), Shadowed: true}) {
		t.Errorf("list around keepalive: %+v", ls[max(i, 0):min(max(i, 0)+2, len(ls))])
	}
	names, _ := l.Names(KindClient)
	if !slices.Equal(names, ClientNames()) {
		t.Errorf("Names(client) = %v, want the built-ins once", names)
	}
	if c, err := l.LoadClient(filepath.Join(dir, "keepalive.toml")); err != nil || c.PoolSize != 3 {
		t.Errorf("by path: %+v %v", c, err)
	}
}

// NewLoader: a named directory must exist; an empty name means
// $LOADCAP_PROFILES_DIR, else ./profiles.d when it exists, else none.
func TestNewLoaderDirConvention(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	t.Setenv(DirEnv, "")
	l, err := NewLoader("", nil)
	if err != nil || l.Dir != "" || l.ProcSys != "/proc/sys" {
		t.Errorf("no profiles.d: %+v %v", l, err)
	}
	if err := os.Mkdir(DefaultDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, DefaultDir, map[string]string{"mine.toml": "conn = \"pool\"\n"})
	if l, err = NewLoader("", nil); err != nil || l.Dir != DefaultDir {
		t.Errorf("with ./profiles.d: %+v %v", l, err)
	}
	if _, err := DefaultLoader().LoadClient("mine"); err != nil {
		t.Errorf("package loader, ./profiles.d/mine.toml: %v", err)
	}
	other := t.TempDir()
	writeFiles(t, other, map[string]string{"theirs.toml": "conn = \"pool\"\n"})
	t.Setenv(DirEnv, other)
	if l, err = NewLoader("", nil); err != nil || l.Dir != other {
		t.Errorf("with %s: %+v %v", DirEnv, l, err)
	}
	if _, err := LoadClient("theirs"); err != nil {
		t.Errorf("package LoadClient with %s: %v", DirEnv, err)
	}
	if l, err = NewLoader(DefaultDir, nil); err != nil || l.Dir != DefaultDir {
		t.Errorf("explicit dir beats the environment: %+v %v", l, err)
	}
	for _, bad := range []string{"nope", "profiles.d/mine.toml"} {
		if _, err := NewLoader(bad, nil); err == nil || !strings.Contains(err.Error(), "profiles directory "+bad) {
			t.Errorf("NewLoader(%q) = %v", bad, err)
		}
	}
	t.Setenv(DirEnv, filepath.Join(other, "gone"))
	if _, err := LoadClient("theirs"); err == nil || !strings.Contains(err.Error(), "no such directory") {
		t.Errorf("package LoadClient with a missing %s: %v", DirEnv, err)
	}
}

// fakeProcSys makes a sysctl tree holding the given dotted keys.
func fakeProcSys(t *testing.T, keys ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, k := range keys {
		p := filepath.Join(root, KeyPath(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// A key the kernel lacks is reported with file, line and key, with the
// likely intended key for a typo; keys marked "-" and keys Linux removed
// (tcp_tw_recycle, which lint explains) are not.
func TestAbsentKeys(t *testing.T) {
	proc := fakeProcSys(t, "net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_fin_timeout", "net.core.somaxconn")
	data := "# typos\n" +
		"net.ipv4.ip_local_port_rang = 1024 65535\n" + // 2: a typo of a model key
		"net.ipv4.tcp_tw_reuse = 1\n" + // 3: exists
		"net.ipv4.tcp_tw_recycle = 1\n" + // 4: removed in 4.12, lint explains it
		"-net.ipv4.tcp_tw_reuse_delay = 500\n" + // 5: '-' accepts its absence
		"net.netfilter.nf_conntrack_max = 262144\n" + // 6: absent, not close to any key
		"net/core/somaxconn = 4096\n" // 7: exists, slashed form
	s, err := ParseSysctl("typo.conf", "typo", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	got := s.AbsentKeys(proc)
	if len(got) != 2 {
		t.Fatalf("AbsentKeys = %v, want lines 2 and 6", got)
	}
	want0 := `typo.conf:2: key "net.ipv4.ip_local_port_rang": not on this kernel (no ` + filepath.Join(proc, "net/ipv4/ip_local_port_rang") +
		`), so it is ignored and the Linux default applies; did you mean net.ipv4.ip_local_port_range?`
	if got[0].Error() != want0 {
		t.Errorf("typo:\n got %s\nwant %s", got[0], want0)
	}
	if msg := got[1].Error(); !strings.HasPrefix(msg, `typo.conf:6: key "net.netfilter.nf_conntrack_max": not on this kernel`) || strings.Contains(msg, "did you mean") {
		t.Errorf("absent unrelated key: %s", msg)
	}
	// Loading the file through a Loader with ProcSys writes the same lines.
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"typo.conf": data})
	var warn bytes.Buffer
	if _, err := (Loader{Dir: dir, ProcSys: proc, Warn: &warn}).LoadSysctl("typo"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(warn.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "loadcap: warning: "+filepath.Join(dir, "typo.conf")+`:2: key "net.ipv4.ip_local_port_rang"`) {
		t.Errorf("warnings:\n%s", warn.String())
	}
	// No tree to check against: no warnings rather than one per key.
	if got := s.AbsentKeys(t.TempDir()); got != nil {
		t.Errorf("empty proc tree: %v", got)
	}
}

// The built-in sysctl profiles draw no warning on this kernel: the
// incident's tcp_tw_recycle is lint's business, linux-default marks
// tcp_tw_reuse_delay with "-".
func TestBuiltinSysctlsNoAbsentKeys(t *testing.T) {
	if !SysctlExists("/proc/sys", "net.ipv4.ip_local_port_range") {
		t.Skip("no /proc/sys/net/ipv4 here")
	}
	for _, n := range SysctlNames() {
		var warn bytes.Buffer
		if _, err := (Loader{ProcSys: "/proc/sys", Warn: &warn}).LoadSysctl(n); err != nil {
			t.Fatal(err)
		}
		if warn.Len() != 0 {
			t.Errorf("%s: %s", n, warn.String())
		}
	}
}
