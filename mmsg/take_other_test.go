//go:build !linux

package mmsg

// takeClosesConn: elsewhere Take is New, and the *net.UDPConn stays open.
const takeClosesConn = false
