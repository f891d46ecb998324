package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/profiles"
)

// Do runs fn on an OS thread that has joined the network namespace at nsPath
// (see Lab.NSPath), then moves the thread back to its original namespace.
// fn runs on its own goroutine, locked to its thread; Do waits for it and
// returns its error. Sockets created by fn stay in the namespace after Do
// returns and may be used from any goroutine; goroutines fn starts do not
// run in the namespace. If the thread cannot be moved back, it is left locked
// and the runtime discards it. A panic in fn is re-raised in the caller.
func Do(nsPath string, fn func() error) error {
	if nsPath == "" {
		return errors.New("lab: enter namespace: empty path")
	}
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lab: open namespace %s: %w", nsPath, err)
	}
	defer unix.Close(target)

	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("lab: open own namespace: %w", err)}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("lab: enter namespace %s: %w", nsPath, err)}
			return
		}
		var r result
		func() {
			defer func() { r.panic = recover() }()
			r.err = fn()
		}()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread dies with this goroutine.
			r.err = errors.Join(r.err, fmt.Errorf("lab: leave namespace %s: %w", nsPath, err))
			done <- r
			return
		}
		runtime.UnlockOSThread()
		done <- r
	}()
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

// sysctlPath turns a sysctl key into its /proc/sys path. Keys are dotted
// ("net.ipv4.tcp_tw_reuse", a "/" standing for a "." inside a name, as in
// sysctl(8)) or slashed ("net/ipv4/conf/eth0.1/rp_filter"). Only keys under
// net are accepted: the others are not per-namespace.
func sysctlPath(key string) (string, error) {
	k := strings.TrimSpace(key)
	if k == "" {
		return "", errors.New("lab: empty sysctl key")
	}
	k = profiles.KeyPath(k)
	for _, part := range strings.Split(k, "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("lab: bad sysctl key %q", key)
		}
	}
	return filepath.Join("/proc/sys", k), nil
}

// perNamespace reports whether a key can be per-namespace at all.
func perNamespace(key string) bool {
	p, err := sysctlPath(key)
	return err == nil && strings.HasPrefix(p, "/proc/sys/net/")
}

// Skip reasons reported in Lab.Skipped.
const (
	SkipAbsent = "absent in a network namespace on this kernel"
	SkipGlobal = "not per-namespace: writing it would change the host"
)

// apply writes values inside the namespace at nsPath and reads each back.
func apply(nsPath string, values map[string]string) (applied, skipped map[string]string, err error) {
	applied, skipped = map[string]string{}, map[string]string{}
	keys := make([]string, 0, len(values))
	for k := range values {
		if !perNamespace(k) {
			skipped[k] = SkipGlobal
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return applied, skipped, nil
	}
	err = Do(nsPath, func() error {
		for _, k := range keys {
			p, _ := sysctlPath(k) // checked by perNamespace
			v := values[k]
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if errors.Is(err, os.ErrNotExist) {
				skipped[k] = SkipAbsent
				continue
			}
			if err != nil {
				return fmt.Errorf("lab: set sysctl %s: %w", k, err)
			}
			_, werr := f.WriteString(v)
			cerr := f.Close()
			if werr = errors.Join(werr, cerr); werr != nil {
				return fmt.Errorf("lab: set sysctl %s=%q: %w", k, v, unwrapPath(werr))
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("lab: read back sysctl %s: %w", k, err)
			}
			applied[k] = normalize(string(b))
		}
		return nil
	})
	return applied, skipped, err
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

// Sysctls reads the values in force for keys inside the namespace at nsPath
// ("" reads the caller's own namespace). Keys absent in that namespace are
// left out of the result; multi-value keys come back single-space separated.
func Sysctls(nsPath string, keys []string) (map[string]string, error) {
	out := make(map[string]string, len(keys))
	read := func() error {
		for _, k := range keys {
			p, err := sysctlPath(k)
			if err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("lab: read sysctl %s: %w", k, err)
			}
			out[k] = normalize(string(b))
		}
		return nil
	}
	if nsPath == "" {
		return out, read()
	}
	return out, Do(nsPath, read)
}

// nsIno identifies a namespace by the device and inode of its handle.
type nsIno struct{ dev, ino uint64 }

func statNS(path string) (nsIno, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsIno{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return nsIno{uint64(st.Dev), st.Ino}, nil
}

// pidsIn lists the processes (other than this one) whose network namespace
// is the one at nsPath. Zombies have no namespace and are not listed.
func pidsIn(nsPath string) ([]int, error) {
	want, err := statNS(nsPath)
	if err != nil {
		return nil, fmt.Errorf("lab: list processes in %s: %w", filepath.Base(nsPath), err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("lab: list processes: %w", err)
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		got, err := statNS("/proc/" + e.Name() + "/ns/net")
		if err == nil && got == want {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
