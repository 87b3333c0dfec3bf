package mmsg

// takeClosesConn: on Linux Take closes the *net.UDPConn it takes.
const takeClosesConn = true
