/*
Copyright The Flowscope Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

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

	p := NewPool(&tls.Config{}, map[string]string{"silent": silent.Addr().String(), "down": refusedAddr})
	defer p.Close()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if p.Dialed() {
			t.Fatal("dialed while an agent's handshake is pending")
		}
		time.Sleep(20 * time.Millisecond)
	}

	p = NewPool(&tls.Config{}, map[string]string{"down": refusedAddr})
	defer p.Close()
	deadline = time.Now().Add(5 * time.Second)
	for !p.Dialed() {
		if time.Now().After(deadline) {
			t.Fatal("not dialed although the only agent refused the connection")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
