package sysmem

import (
	"testing"
	"testing/fstest"
)

func TestLimit(t *testing.T) {
	const meminfo = "MemTotal:       24683772 kB\nMemFree:        22033296 kB\n"
	const total = 24683772 << 10
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
	}{
		{"nothing readable", nil, 0},
		{"meminfo only", map[string]string{"proc/meminfo": meminfo}, total},
		{"v2 below MemTotal", map[string]string{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": "0::/system.slice/trackd.service\n",
			"sys/fs/cgroup/system.slice/trackd.service/memory.max": "1073741824\n",
		}, 1 << 30},
		{"v2 max", map[string]string{
			"proc/meminfo":             meminfo,
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "max\n",
		}, total},
		{"v2 above MemTotal", map[string]string{
			"proc/meminfo":             meminfo,
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "99999999999999\n",
		}, total},
		{"v1 limit", map[string]string{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": "9:name=systemd:/\n4:memory:/docker/abc\n0::/\n",
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "536870912\n",
		}, 1 << 29},
		{"v1 in a container: its cgroup mounted as the root", map[string]string{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": "4:memory:/docker/abc\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "536870912\n",
		}, 1 << 29},
		{"v2 limit of a parent slice", map[string]string{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": "0::/trackd.slice/trackd.service\n",
			"sys/fs/cgroup/trackd.slice/trackd.service/memory.max": "max\n",
			"sys/fs/cgroup/trackd.slice/memory.max":                "1073741824\n",
		}, 1 << 30},
		{"v1 unlimited", map[string]string{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": "4:cpu,memory:/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, total},
		{"cgroup only", map[string]string{
			"proc/self/cgroup":           "0::/a\n",
			"sys/fs/cgroup/a/memory.max": "2147483648",
		}, 1 << 31},
		{"garbage", map[string]string{"proc/meminfo": "MemTotal: lots\n", "proc/self/cgroup": "nonsense"}, 0},
	} {
		fsys := fstest.MapFS{}
		for name, data := range tc.files {
			fsys[name] = &fstest.MapFile{Data: []byte(data)}
		}
		if got := limit(fsys); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := Limit(); got < 0 {
		t.Errorf("Limit() = %d on this machine", got)
	}
}
