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
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"syscall"
	"time"
)

// Run serves and generates traffic as configured until ctx ends, then
// reports a last time. It fails at once on a bad configuration, a port it
// cannot listen on, a --dns-table it cannot read or an ICMP socket it
// cannot open; errors of single exchanges are only counted.
func Run(ctx context.Context, cfg Config) error {
	listens, connects, err := cfg.parse()
	if err != nil {
		return err
	}
	if cfg.hosts, err = readHosts(cfg.DNSTable); err != nil {
		return fmt.Errorf("--dns-table: %w", err)
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	r := &reporter{name: cfg.Name, file: cfg.StatsFile, started: time.Now().UTC()}
	if r.name == "" {
		r.name, _ = os.Hostname()
	}

	// Everything is set up before anything runs, so that a failure leaves
	// nothing behind.
	var servers, clients []func(context.Context)
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for _, l := range listens {
		job, closer, err := listen(l, &cfg, r.newCounter("server", l.spec))
		if err != nil {
			return fmt.Errorf("--listen %s: %w", l.spec, err)
		}
		servers, closers = append(servers, job), append(closers, closer)
	}
	for i, c := range connects {
		job, closer, err := client(c, i, &cfg, r.newCounter("client", c.spec))
		if err != nil {
			return fmt.Errorf("--connect %s: %w", c.spec, err)
		}
		clients, closers = append(clients, job), append(closers, closer)
	}
	log.Printf("started %s: listen %q, connect %q every %v", r.name, cfg.Listen, cfg.Connect, cfg.Interval)

	var serving, sending sync.WaitGroup
	for _, job := range servers {
		serving.Go(func() { job(ctx) })
	}
	for _, job := range clients {
		sending.Go(func() { job(ctx) })
	}
	ticker := time.NewTicker(cfg.ReportInterval)
	defer ticker.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-ticker.C:
			r.report()
		}
	}
	// The clients finish their exchange in progress (at most --timeout),
	// so that the totals add up; then closing the sockets ends the servers.
	sending.Wait()
	for _, c := range closers {
		c()
	}
	closers = nil
	serving.Wait()
	r.report()
	log.Printf("stopped %s", r.name)
	return nil
}

// every runs f after delay and then every interval (or right after f, when
// f takes longer) until ctx ends.
func every(ctx context.Context, delay, interval time.Duration, f func()) {
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		f()
		t.Reset(max(0, interval-time.Since(start)))
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool } // net/http's and net's
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &t) && t.Timeout())
}

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}
