//go:build !linux

package httpserver

// listen serves with a goroutine per connection: there is no epoll.
func listen(addr string, h Handler, opts Options) (*Server, error) {
	return listenPortable(addr, h, opts)
}
