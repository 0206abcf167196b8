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

package traffic

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// serverIdleTimeout closes a server connection that has been silent this
// long (a client whose namespace went away never sends a FIN).
const serverIdleTimeout = 5 * time.Minute

// listen opens the socket of one --listen item. The job serves until the
// closer is called. All listen on all addresses, IPv4 and IPv6, unless the
// spec names one (Kafka: see listenKafka).
func listen(l listenSpec, cfg *Config, c *counter) (job func(context.Context), closer func(), err error) {
	addr := ":" + strconv.Itoa(int(l.port))
	if l.addr.IsValid() {
		addr = hostPort(netip.AddrPortFrom(l.addr, l.port))
	}
	switch l.proto {
	case "http":
		return listenHTTP(addr, c)
	case "grpc":
		return listenGRPC(addr, c)
	case "dns":
		return listenDNS(addr, cfg.hosts, c)
	case "kafka":
		return listenKafka(l, c)
	}
	if l.proto == "udp" {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		return func(context.Context) { serveUDP(pc, c) }, func() { pc.Close() }, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	s := &tcpServer{ln: ln, c: c, conns: map[net.Conn]struct{}{},
		body: bytes.Repeat([]byte("x"), cfg.ResponseSize)}
	return func(context.Context) { s.serve() }, s.close, nil
}

// serveUDP echoes every datagram to its sender.
func serveUDP(pc net.PacketConn, c *counter) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			c.fail(err)
			continue
		}
		c.add(func(s *Stats) { s.Recv++; s.RecvBytes += uint64(n) })
		if _, err := pc.WriteTo(buf[:n], from); err != nil {
			c.fail(err)
			continue
		}
		c.add(func(s *Stats) { s.Sent++; s.SentBytes += uint64(n) })
	}
}

// tcpServer answers HTTP-like requests: a request is a header block (lines
// up to an empty line, no body), the answer "200 OK" with a body of
// --response-size bytes. A connection serves requests until the client
// closes it, so curl works as a client too.
type tcpServer struct {
	ln   net.Listener
	c    *counter
	body []byte

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func (s *tcpServer) serve() {
	defer s.wg.Wait()
	for {
		conn, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			s.c.fail(err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			s.handle(conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
		})
	}
}

// close stops accepting and ends the open connections.
func (s *tcpServer) close() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for conn := range s.conns {
		conn.Close()
	}
}

func (s *tcpServer) handle(conn net.Conn) {
	defer conn.Close()
	s.c.add(func(st *Stats) { st.Conns++ })
	br := bufio.NewReader(conn)
	for {
		if err := conn.SetReadDeadline(time.Now().Add(serverIdleTimeout)); err != nil {
			s.c.fail(err) // not counted when our shutdown closed conn
			return
		}
		n, _, err := readHeader(br)
		if err != nil {
			// The client closing (EOF) or our shutdown is the normal end.
			if n > 0 || !(errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)) {
				s.c.fail(err)
			}
			return
		}
		s.c.add(func(st *Stats) { st.Recv++; st.RecvBytes += uint64(n) })
		resp := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", len(s.body))
		resp = append(resp, s.body...)
		if _, err := conn.Write(resp); err != nil {
			s.c.fail(err)
			return
		}
		s.c.add(func(st *Stats) { st.Sent++; st.SentBytes += uint64(len(resp)) })
	}
}

// readHeader reads an HTTP-like header block: lines up to an empty one. It
// returns the bytes read and the Content-Length header's value (0 when
// missing).
func readHeader(br *bufio.Reader) (n int, contentLength int64, err error) {
	for first := true; ; first = false {
		line, err := br.ReadString('\n')
		n += len(line)
		if err != nil {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return n, contentLength, err
		}
		if n > 64<<10 {
			return n, contentLength, errors.New("header larger than 64 KiB")
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" && !first {
			return n, contentLength, nil
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
			contentLength, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || contentLength < 0 {
				return n, 0, fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
}
