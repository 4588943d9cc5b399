//go:build unix

package export

import "syscall"

// peek looks at a socket without blocking and without taking anything
// from it.
func peek(sc syscall.Conn) int {
	rc, err := sc.SyscallConn()
	if err != nil {
		return peekClosed
	}
	state := peekUnknown
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK || rerr == syscall.EINTR:
			state = peekOpen
		case rerr != nil, n == 0:
			state = peekClosed
		default:
			state = peekData
		}
		return true // never wait
	})
	if err != nil {
		return peekClosed
	}
	return state
}
