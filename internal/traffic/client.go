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
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// client prepares the generator of one --connect item; index makes the ICMP
// identifiers of one process distinct. The job exchanges with the
// destination every --interval until its context ends.
func client(cs connectSpec, index int, cfg *Config, c *counter) (job func(context.Context), closer func(), err error) {
	run := func(once func()) func(context.Context) {
		return func(ctx context.Context) { every(ctx, cfg.StartDelay, cfg.Interval, once) }
	}
	// A UDP or ICMP exchange waits for its answer at most one interval, so
	// that drops (no answer) do not slow the sending down.
	wait := min(cfg.Timeout, cfg.Interval)
	switch cs.proto {
	case "http":
		h := newHTTPClient(cs.addr, cfg, c)
		return run(h.once), h.close, nil
	case "grpc":
		g := &grpcClient{target: hostPort(cs.addr), cfg: cfg, c: c}
		return func(ctx context.Context) { run(g.once)(ctx); g.close() }, func() {}, nil
	case "dns":
		d, err := newDNSClient(cs.addr, cfg, c)
		if err != nil {
			return nil, nil, err
		}
		return func(ctx context.Context) { run(d.once)(ctx); d.close() }, func() {}, nil
	case "kafka":
		k, err := newKafkaClient(cs.addr, cfg, c)
		if err != nil {
			return nil, nil, err
		}
		return func(ctx context.Context) { k.run(ctx, run(k.once)) }, func() {}, nil
	case "tcp", "tcplong":
		// The connection is only used by the job's goroutine, which
		// closes it when it ends.
		t := &tcpClient{addr: hostPort(cs.addr), long: cs.proto == "tcplong", cfg: cfg, c: c}
		return func(ctx context.Context) { run(t.once)(ctx); t.close() }, func() {}, nil
	case "udp":
		// A connected socket: an ICMP port unreachable in answer makes the
		// next read fail with ECONNREFUSED (counted as refused). Dialing
		// UDP sends nothing.
		conn, err := net.Dial("udp", hostPort(cs.addr))
		if err != nil {
			return nil, nil, err
		}
		u := &udpClient{conn: conn, wait: wait, size: cfg.UDPSize, ipHeader: ipHeaderLen(cs), c: c}
		return run(u.once), func() { conn.Close() }, nil
	default: // icmp
		p, err := newPinger(cs.addr.Addr(), uint16(os.Getpid()+index), cfg.ICMPSize, wait, c)
		if err != nil {
			return nil, nil, err
		}
		return run(p.once), func() { p.conn.Close() }, nil
	}
}

func ipHeaderLen(cs connectSpec) int {
	if cs.addr.Addr().Is4() {
		return 20
	}
	return 40
}

// tcpClient makes HTTP-like requests (see tcpServer): on a new connection
// each time (short), or on one connection kept open (long).
type tcpClient struct {
	addr string
	long bool
	cfg  *Config
	c    *counter
	seq  uint64

	// The long-lived connection, nil when there is none.
	conn net.Conn
	br   *bufio.Reader
}

func (t *tcpClient) once() {
	t.seq++
	if t.conn == nil {
		conn, err := net.DialTimeout("tcp", t.addr, t.cfg.Timeout)
		if err != nil {
			t.c.fail(err)
			return
		}
		t.c.add(func(s *Stats) { s.Conns++ })
		t.conn, t.br = conn, bufio.NewReader(conn)
	}
	err := t.exchange()
	if err != nil {
		t.c.fail(err)
	}
	// A short connection ends here; a long one when it broke. The whole
	// response was read, so closing sends a FIN, not a reset.
	if !t.long || err != nil {
		t.close()
	}
}

// exchange sends one request and reads its response.
func (t *tcpClient) exchange() error {
	if err := t.conn.SetDeadline(time.Now().Add(t.cfg.Timeout)); err != nil {
		return err
	}
	req := request(t.seq, t.addr, t.cfg.RequestSize)
	if _, err := t.conn.Write(req); err != nil {
		return err
	}
	t.c.add(func(s *Stats) { s.Sent++; s.SentBytes += uint64(len(req)) })
	n, length, err := readHeader(t.br)
	if err == nil {
		var body int64
		body, err = io.CopyN(io.Discard, t.br, length)
		n += int(body)
	}
	if err != nil {
		return fmt.Errorf("reading the response: %w", err)
	}
	t.c.add(func(s *Stats) { s.Recv++; s.RecvBytes += uint64(n) })
	return nil
}

func (t *tcpClient) close() {
	if t.conn != nil {
		t.conn.Close()
		t.conn, t.br = nil, nil
	}
}

// request is an HTTP-like request of about size bytes (padded with a
// header; never smaller than its headers).
func request(seq uint64, host string, size int) []byte {
	head := fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: %s\r\nUser-Agent: flowscope-traffic\r\n", seq, host)
	const padHeader = "X-Pad: \r\n"
	if pad := size - len(head) - len(padHeader) - 2; pad > 0 {
		head += "X-Pad: " + strings.Repeat("x", pad) + "\r\n"
	}
	return []byte(head + "\r\n")
}

// udpClient sends a datagram and waits for its echo.
type udpClient struct {
	conn     net.Conn
	wait     time.Duration
	size     int
	ipHeader int
	c        *counter
	seq      uint64
	buf      [64 << 10]byte
}

func (u *udpClient) once() {
	u.seq++
	msg := payload(u.size, u.seq)
	if err := u.conn.SetDeadline(time.Now().Add(u.wait)); err != nil {
		u.c.fail(err)
		return
	}
	if _, err := u.conn.Write(msg); err != nil {
		// Typically ECONNREFUSED left over from an earlier unreachable:
		// this datagram was not sent.
		u.c.fail(err)
		return
	}
	u.c.add(func(s *Stats) {
		s.Sent++
		s.SentBytes += uint64(len(msg))
		s.SentIPBytes += uint64(len(msg) + 8 + u.ipHeader)
	})
	for {
		n, err := u.conn.Read(u.buf[:])
		if err != nil {
			u.c.fail(err)
			return
		}
		if bytes.Equal(u.buf[:n], msg) {
			u.c.add(func(s *Stats) { s.Recv++; s.RecvBytes += uint64(n) })
			return
		}
		// The late echo of an earlier datagram, already counted as a timeout.
	}
}

// payload is size bytes starting with a sequence number, for tcpdump readers.
func payload(size int, seq uint64) []byte {
	b := []byte(fmt.Sprintf("flowscope-traffic %d ", seq))
	for len(b) < size {
		b = append(b, '.')
	}
	return b[:size]
}
