package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Leftover is a namespace or link named by loadcap.
type Leftover struct {
	// Name is the namespace or link name.
	Name string
	// Kind is "netns" or "link" (a veth end found in the host namespace).
	Kind string
	// RunID is the run the name belongs to.
	RunID string
	// OwnerPID is the process that created the lab, 0 if unknown.
	OwnerPID int
	// Live is true when OwnerPID still runs: the lab is in use, not a
	// leftover, and Cleanup leaves it alone.
	Live bool
}

var (
	nsNameRe   = regexp.MustCompile(`^` + regexp.QuoteMeta(Prefix) + `([a-z0-9]{1,8})-(cli[0-9]{0,2}|srv|fw)$`)
	linkNameRe = regexp.MustCompile(`^` + regexp.QuoteMeta(LinkPrefix) + `([a-z0-9]{1,8})-(c[0-9]{0,2}|s|rc|rs|r[0-9]{1,2}|br)$`)
)

// Leftovers lists the namespaces (client, server and firewall router) and
// any veth end in the host namespace named by loadcap, with whether the run
// that made them is still alive.
func Leftovers() ([]Leftover, error) {
	var out []Leftover
	ents, err := os.ReadDir(NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lab: list namespaces: %w", err)
	}
	for _, e := range ents {
		m := nsNameRe.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, live := owner(m[1])
		out = append(out, Leftover{Name: e.Name(), Kind: "netns", RunID: m[1], OwnerPID: pid, Live: live})
	}
	links, err := hostLinks()
	if err != nil {
		return nil, err
	}
	for _, name := range links {
		m := linkNameRe.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, live := owner(m[1])
		out = append(out, Leftover{Name: name, Kind: "link", RunID: m[1], OwnerPID: pid, Live: live})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Cleanup removes the leftovers of earlier runs: every loadcap namespace
// whose run is no longer alive, after killing by pid the processes still in
// it, and any loadcap veth in the host namespace. It returns the names
// removed. Labs of live runs are left alone (see Leftovers).
func Cleanup() ([]string, error) {
	removed, err := remove(func(lo Leftover) bool { return !lo.Live }, time.Second, time.Minute)
	removeStaleOwners()
	return removed, err
}

// RemoveOwned removes, fast, the labs that process pid owns (a run being
// torn down by a second signal): the processes in their namespaces are
// killed by pid at once, the namespaces and host links deleted and the
// owner files removed, all within limit. It returns the names removed.
func RemoveOwned(pid int, limit time.Duration) ([]string, error) {
	ids := map[string]bool{}
	removed, err := remove(func(lo Leftover) bool {
		if lo.OwnerPID == pid && lo.Live {
			ids[lo.RunID] = true
			return true
		}
		return false
	}, 0, limit)
	var errs []error
	for id := range ids {
		if rerr := os.Remove(filepath.Join(OwnerDir, id)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("lab: remove owner file: %w", rerr))
		}
	}
	return removed, errors.Join(append([]error{err}, errs...)...)
}

// remove deletes the leftovers that pick selects: namespaces after grace
// for their processes to exit (then killed by pid), then links, within limit.
func remove(pick func(Leftover) bool, grace, limit time.Duration) ([]string, error) {
	left, err := Leftovers()
	if err != nil {
		return nil, err
	}
	var todo []Leftover
	for _, lo := range left {
		if pick(lo) {
			todo = append(todo, lo)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	if !Privileged() {
		return nil, ErrNotPermitted
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var removed []string
	var errs []error
	for _, lo := range todo {
		var err error
		switch lo.Kind {
		case "netns":
			err = removeNS(ctx, lo.Name, grace)
		case "link":
			err = ip(ctx, "link", "delete", lo.Name)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, lo.Name)
	}
	return removed, errors.Join(errs...)
}

func hostLinks() ([]string, error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, nil // no iproute2: no lab could have been made here
	}
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("lab: list links: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		// "7: lc-abc-c@if6: <...>"
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names = append(names, name)
	}
	return names, nil
}

// writeOwner records this process as the owner of the lab.
func (l *Lab) writeOwner() error {
	start, err := startTime(os.Getpid())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(OwnerDir, 0o755); err != nil {
		return fmt.Errorf("lab: write owner file: %w", err)
	}
	p := filepath.Join(OwnerDir, l.ID)
	data := fmt.Sprintf("%d %d\n", os.Getpid(), start)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		return fmt.Errorf("lab: write owner file: %w", err)
	}
	l.owner = p
	return nil
}

// owner returns the pid recorded for a run and whether that process (the
// same one: pid and start time match) still runs.
func owner(runID string) (pid int, live bool) {
	b, err := os.ReadFile(filepath.Join(OwnerDir, runID))
	if err != nil {
		return 0, false
	}
	var start uint64
	if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err != nil {
		return 0, false
	}
	got, err := startTime(pid)
	return pid, err == nil && got == start
}

func removeStaleOwners() {
	ents, _ := os.ReadDir(OwnerDir)
	for _, e := range ents {
		if !runIDRe.MatchString(e.Name()) {
			continue
		}
		if _, live := owner(e.Name()); live {
			continue
		}
		c, s := Names(e.Name())
		gone := true
		names := []string{c, s, RouterName(e.Name())}
		for i := 1; i < MaxNATClients; i++ {
			ns, _, _ := NATClientNames(e.Name(), i)
			names = append(names, ns)
		}
		for _, ns := range names {
			if _, err := os.Stat(filepath.Join(NetnsDir, ns)); !errors.Is(err, os.ErrNotExist) {
				gone = false
			}
		}
		if gone {
			_ = os.Remove(filepath.Join(OwnerDir, e.Name()))
		}
	}
}

// startTime returns a process's start time in clock ticks since boot (field
// 22 of /proc/PID/stat), which tells a process from a later one that reused
// its pid.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("lab: read process start time: %w", err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("lab: parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 20 {
		return 0, fmt.Errorf("lab: parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}
