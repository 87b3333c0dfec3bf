package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"trackd/config"
	"trackd/server"
)

// TestShippedFilesUseRealFlags: the flags that contrib/trackd.service and
// the Dockerfile pass to trackd exist and make a valid configuration.
func TestShippedFilesUseRealFlags(t *testing.T) {
	for _, tc := range []struct{ file, prefix string }{
		{"../../contrib/trackd.service", "ExecStart=/usr/local/bin/trackd "},
		{"../../Dockerfile", "CMD "},
	} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		var args []string
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, tc.prefix); ok {
				rest = strings.NewReplacer("[", "", "]", "", `"`, "", ",", "").Replace(rest)
				args = strings.Fields(rest)
			}
		}
		if len(args) == 0 {
			t.Fatalf("%s: no %q line", tc.file, tc.prefix)
		}
		// the config file the unit names is not here: use the example
		for i := range args {
			if args[i] == "/etc/trackd/trackd.toml" {
				args[i] = "../../contrib/trackd.toml"
			}
		}
		cfg, err := config.Parse(args, &bytes.Buffer{})
		if err == nil {
			err = server.Validate(cfg)
		}
		if err != nil {
			t.Errorf("%s: trackd %v: %v", tc.file, args, err)
		}
	}
}
