package export

import (
	"net"
	"testing"
	"time"
)

// TestAlive: a connection the receiver holds is alive; one it closed is
// not, found without waiting on a deadline.
func TestAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	server := <-accepted
	if !alive(c) {
		t.Fatal("an open connection is not alive")
	}
	server.Close()
	deadline := time.Now().Add(5 * time.Second)
	for alive(c) {
		if time.Now().After(deadline) {
			t.Fatal("a connection the receiver closed is still alive")
		}
		time.Sleep(time.Millisecond)
	}
}
