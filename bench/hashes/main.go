// Command hashes prints the info hashes of trackd-load's workload, one
// 40-character lowercase hex hash per line: the format of opentracker's
// whitelist (access.whitelist). The hashes depend only on -torrents and
// -seed (loadgen.Workload.InfoHash), so the list matches every trackd-load
// run with the same two flags, whatever its -peers.
package main

import (
	"bufio"
	"encoding/hex"
	"flag"
	"fmt"
	"os"

	"trackd/loadgen"
)

func main() {
	torrents := flag.Int("torrents", 1_000_000, "torrents in the workload (as trackd-load -torrents)")
	seed := flag.Uint64("seed", 1, "seed of the workload (as trackd-load -seed)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "hashes: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	// One peer and one source address: the hashes do not depend on them,
	// and the workload stays small.
	wl, err := loadgen.NewWorkload(*torrents, 1, 1, *seed, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hashes:", err)
		os.Exit(1)
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	var line [41]byte
	line[40] = '\n'
	for t := range wl.Torrents() {
		h := wl.InfoHash(t)
		hex.Encode(line[:40], h[:])
		out.Write(line[:])
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "hashes:", err)
		os.Exit(1)
	}
}
