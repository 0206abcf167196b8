package agentclient

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// TestDialedWaitsForEveryConnectionAttempt: an agent that accepts TCP but
// never finishes the handshake keeps the pool undialed; one that refuses
// connections counts as dialed once the attempt failed.
func TestDialedWaitsForEveryConnectionAttempt(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := refused.Addr().String()
	refused.Close()

	p := NewPool(&tls.Config{}, "agent", map[string]string{"silent": silent.Addr().String(), "down": refusedAddr})
	defer p.Close()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if p.Dialed() {
			t.Fatal("dialed while an agent's handshake is pending")
		}
		time.Sleep(20 * time.Millisecond)
	}

	p = NewPool(&tls.Config{}, "agent", map[string]string{"down": refusedAddr})
	defer p.Close()
	deadline = time.Now().Add(5 * time.Second)
	for !p.Dialed() {
		if time.Now().After(deadline) {
			t.Fatal("not dialed although the only agent refused the connection")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
