package config

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// tomlKeys lists the TOML keys of Config.
func tomlKeys() []string {
	var keys []string
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// TestReadmeTableComplete: the README's configuration table has a row
// naming every TOML key (as contrib/trackd.toml shows every key:
// TestExampleConfig), so that a new option cannot be left out of it.
func TestReadmeTableComplete(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(b), "\n## Configuration\n")
	section, _, _ = strings.Cut(section, "\n## ")
	var rows []string
	for line := range strings.SplitSeq(section, "\n") {
		if strings.HasPrefix(line, "| `-") {
			rows = append(rows, line)
		}
	}
	for _, key := range tomlKeys() {
		if !slices.ContainsFunc(rows, func(r string) bool { return strings.Contains(r, "`"+key+"`") }) {
			t.Errorf("README's configuration table has no row for %s", key)
		}
	}
}
