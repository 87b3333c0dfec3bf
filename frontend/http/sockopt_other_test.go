//go:build !unix

package http

func setRcvBuf(fd uintptr, n int) {}
