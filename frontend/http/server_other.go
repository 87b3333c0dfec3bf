//go:build !linux

package http

// listen serves with a goroutine per connection: there is no epoll.
func listen(addr string, h *Handler, opts ServerOptions) (*Server, error) {
	return listenPortable(addr, h, opts)
}
