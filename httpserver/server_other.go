//go:build !linux

package httpserver

import "net"

// listen serves with a goroutine per connection: there is no epoll.
func listen(addr string, h Handler, opts Options) (*Server, error) {
	return listenPortable(addr, h, opts)
}

// portableListenConfig is how the portable Server binds: accepted
// connections get no TCP keep-alive probes (an idle connection is closed
// after IdleTimeout anyway).
func portableListenConfig(*Options) net.ListenConfig {
	lc := tcpListenConfig()
	lc.KeepAlive = -1
	return lc
}

// corkLast would send a connection's last reply with its FIN; Linux only.
func corkLast(net.Conn) {}
