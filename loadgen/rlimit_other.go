//go:build !unix

package loadgen

import "math"

// raiseNoFile has nothing to raise here.
func raiseNoFile() (uint64, error) { return math.MaxUint64, nil }
