//go:build !unix

package httpserver

func setRcvBuf(fd uintptr, n int) {}
