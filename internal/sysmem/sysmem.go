// Package sysmem reads how much memory the process may use: the machine's
// (MemTotal in /proc/meminfo), or its cgroup's limit if that is lower. It
// is what trackd's default memory bound (config max_memory "auto") is
// sized from; it knows nothing of what uses the memory.
package sysmem

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

// Limit returns the memory the process may use: the machine's memory
// (MemTotal in /proc/meminfo), or its cgroup's limit if that is lower
// (cgroup v2 memory.max, v1 memory.limit_in_bytes). It returns 0 where
// neither can be read.
func Limit() int64 { return limit(os.DirFS("/")) }

func limit(fsys fs.FS) int64 {
	total := memTotal(fsys)
	if c := cgroupLimit(fsys); c > 0 && (total == 0 || c < total) {
		total = c
	}
	return total
}

// memTotal returns MemTotal from proc/meminfo in fsys, 0 if unknown.
func memTotal(fsys fs.FS) int64 {
	b, err := fs.ReadFile(fsys, "proc/meminfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil || kb <= 0 {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// cgroupLimit returns the memory limit of the process's cgroup, read from
// fsys as /proc/self/cgroup names it: cgroup v2's memory.max, else v1's
// memory.limit_in_bytes. It returns 0 for none ("max", or v1's huge
// "unlimited") or unknown. The smallest limit on the way from the
// process's cgroup up to the root counts: a parent's (a systemd slice)
// bounds its children, and inside a container the process's own cgroup is
// often mounted as the root, where the path /proc/self/cgroup gives does
// not exist.
func cgroupLimit(fsys fs.FS) int64 {
	b, err := fs.ReadFile(fsys, "proc/self/cgroup")
	if err != nil {
		return 0
	}
	var v1 string
	for line := range strings.SplitSeq(string(b), "\n") {
		// hierarchy-id:controllers:path
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "":
			if n := smallestLimit(fsys, "sys/fs/cgroup", f[2], "memory.max"); n > 0 {
				return n
			}
		case v1 == "" && hasController(f[1], "memory"):
			v1 = f[2]
		}
	}
	if v1 != "" {
		return smallestLimit(fsys, "sys/fs/cgroup/memory", v1, "memory.limit_in_bytes")
	}
	return 0
}

// smallestLimit returns the smallest limit in the file name of the cgroup
// dir under root and of each of its ancestors up to root itself; 0 if none
// has one.
func smallestLimit(fsys fs.FS, root, dir, name string) int64 {
	var least int64
	for d := path.Clean("/" + dir); ; d = path.Dir(d) {
		if n := readLimit(fsys, path.Join(root, d, name)); n > 0 && (least == 0 || n < least) {
			least = n
		}
		if d == "/" {
			return least
		}
	}
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// noLimit is what cgroup v1 reports for no limit, or more: a page-rounded
// 2^63-1.
const noLimit = 1 << 62

// readLimit reads a cgroup limit file: a number of bytes, 0 for "max",
// unlimited or unreadable.
func readLimit(fsys fs.FS, name string) int64 {
	b, err := fs.ReadFile(fsys, strings.TrimPrefix(name, "/"))
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= noLimit {
		return 0
	}
	return n
}
