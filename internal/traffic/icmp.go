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
	"encoding/binary"
	"log"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// ICMP and ICMPv6 echo types.
const (
	icmpEchoRequest   = 8
	icmpEchoReply     = 0
	icmpv6EchoRequest = 128
	icmpv6EchoReply   = 129
)

// pinger sends echo requests to one address and waits for the replies. The
// message is built by hand (8-byte header: type, code, checksum, identifier,
// sequence; then the data).
//
// It uses an ICMP datagram ("ping") socket, like ping(8): the kernel sets
// the identifier and the checksum and hands it only its own replies. That
// needs the process's group in net.ipv4.ping_group_range (also for IPv6),
// which hack/lib/pods.sh sets in the pods' namespaces. Otherwise it falls
// back to a raw socket (root or CAP_NET_RAW), which gets a copy of every
// ICMP packet, so replies are matched by identifier too; but then the
// kernel, finding no ping socket for a reply, also frees it as a drop with
// reason NO_SOCKET, which would show up as dropped replies in flow logs.
type pinger struct {
	conn net.PacketConn
	dst  net.Addr
	ip   net.IP
	v6   bool
	raw  bool
	id   uint16
	seq  uint16
	size int
	wait time.Duration
	c    *counter
	buf  [64 << 10]byte
}

func newPinger(dst netip.Addr, id uint16, size int, wait time.Duration, c *counter) (*pinger, error) {
	p := &pinger{ip: dst.AsSlice(), v6: dst.Is6(), id: id, size: size, wait: wait, c: c}
	family, proto, network, laddr := syscall.AF_INET, syscall.IPPROTO_ICMP, "ip4:icmp", "0.0.0.0"
	if p.v6 {
		family, proto, network, laddr = syscall.AF_INET6, syscall.IPPROTO_ICMPV6, "ip6:ipv6-icmp", "::"
	}
	fd, err := syscall.Socket(family, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, proto)
	if err == nil {
		f := os.NewFile(uintptr(fd), "ping")
		p.conn, err = net.FilePacketConn(f) // a *net.UDPConn
		f.Close()
		if err == nil {
			p.dst = &net.UDPAddr{IP: p.ip}
			return p, nil
		}
	}
	log.Printf("no ICMP datagram socket (%v; see net.ipv4.ping_group_range), using a raw socket: the kernel counts every echo reply as dropped (NO_SOCKET)", err)
	if p.conn, err = net.ListenPacket(network, laddr); err != nil {
		return nil, err
	}
	p.raw, p.dst = true, &net.IPAddr{IP: p.ip}
	return p, nil
}

func (p *pinger) once() {
	p.seq++
	msg := make([]byte, 8, 8+p.size)
	msg[0] = icmpEchoRequest
	if p.v6 {
		msg[0] = icmpv6EchoRequest
	}
	binary.BigEndian.PutUint16(msg[4:], p.id)
	binary.BigEndian.PutUint16(msg[6:], p.seq)
	msg = append(msg, payload(p.size, uint64(p.seq))...)
	if p.raw && !p.v6 {
		// The kernel computes the others: those of ping sockets, and
		// ICMPv6 ones (they cover a pseudo header).
		binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	}

	if err := p.conn.SetDeadline(time.Now().Add(p.wait)); err != nil {
		p.c.fail(err)
		return
	}
	if _, err := p.conn.WriteTo(msg, p.dst); err != nil {
		p.c.fail(err)
		return
	}
	ipHeader := 20
	if p.v6 {
		ipHeader = 40
	}
	p.c.add(func(s *Stats) {
		s.Sent++
		s.SentBytes += uint64(len(msg))
		s.SentIPBytes += uint64(len(msg) + ipHeader)
	})
	reply := byte(icmpEchoReply)
	if p.v6 {
		reply = icmpv6EchoReply
	}
	for {
		// Reads come without the IP header (Go strips IPv4 ones of raw
		// sockets; the kernel all others).
		n, from, err := p.conn.ReadFrom(p.buf[:])
		if err != nil {
			p.c.fail(err)
			return
		}
		b := p.buf[:n]
		var src net.IP
		switch a := from.(type) {
		case *net.UDPAddr:
			src = a.IP
		case *net.IPAddr:
			src = a.IP
		}
		if !src.Equal(p.ip) || n < 8 || b[0] != reply || binary.BigEndian.Uint16(b[6:]) != p.seq ||
			(p.raw && binary.BigEndian.Uint16(b[4:]) != p.id) {
			continue // someone else's packet, or an old reply
		}
		p.c.add(func(s *Stats) { s.Recv++; s.RecvBytes += uint64(n) })
		return
	}
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
