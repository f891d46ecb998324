package sampler

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// NetNSDir is where `ip netns add NAME` keeps its namespaces.
const NetNSDir = "/var/run/netns"

// NetNSPath returns the path of a network namespace given as a name (looked
// up in NetNSDir) or as a path (anything with a slash, such as
// /proc/PID/ns/net).
func NetNSPath(nameOrPath string) string {
	if strings.ContainsRune(nameOrPath, '/') {
		return nameOrPath
	}
	return filepath.Join(NetNSDir, nameOrPath)
}

// openNetNS opens the network namespace nameOrPath and checks that it is one.
func openNetNS(nameOrPath string) (int, error) {
	path := NetNSPath(nameOrPath)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	if err := checkNetNS(fd); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	return fd, nil
}

func checkNetNS(fd int) error {
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("not a namespace: %w", err)
	}
	if t != unix.CLONE_NEWNET {
		return fmt.Errorf("not a network namespace")
	}
	return nil
}

// inNetNS runs fn on a locked OS thread that has entered the network
// namespace nsfd, then moves the thread back. The rest of the process stays
// where it is. Files and sockets opened by fn belong to the namespace for
// their whole life. If the thread cannot go back, it is left locked so that
// the Go runtime discards it when the goroutine ends.
func inNetNS(nsfd int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread dies with this goroutine.
			errc <- fmt.Errorf("leave network namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
