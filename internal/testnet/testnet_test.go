package testnet

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

func TestRefusingAddrRefusesAndStaysReserved(t *testing.T) {
	addr := RefusingAddr(t, "127.0.0.1")
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			t.Fatal("connection accepted")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("want connection refused, got %v", err)
		}
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatal("another listener could take the port")
	}
}
