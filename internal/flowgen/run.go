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

package flowgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// Config is the command line of flowscope-flowgen.
type Config struct {
	// NodeName is the node the flows are observed on.
	NodeName string
	// NodeIndex is the node's pod address octet; negative derives it from
	// NodeName.
	NodeIndex int
	// Out is the file lines are appended to; "-" is standard output.
	Out string
	// Rate is the number of lines written per second.
	Rate float64
	// Count stops after that many lines; 0 runs until cancelled.
	Count int
	// Seed makes the flows repeatable; 0 picks one from the clock.
	Seed uint64
}

// AddFlags registers the configuration's flags, with their defaults.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	if name := os.Getenv("NODE_NAME"); name != "" {
		host = name
	}
	fs.StringVar(&c.NodeName, "node-name", host, "node the flows are observed on; the default is $NODE_NAME, else the host name")
	fs.IntVar(&c.NodeIndex, "node-index", -1, "third octet of the node's pod addresses, 0-255; negative derives it from --node-name")
	fs.StringVar(&c.Out, "out", "-", `file to append Hubble export lines to, "-" for standard output`)
	fs.Float64Var(&c.Rate, "rate", 2, "lines per second")
	fs.IntVar(&c.Count, "count", 0, "stop after this many lines; 0 runs until interrupted")
	fs.Uint64Var(&c.Seed, "seed", 0, "random seed for a repeatable sequence; 0 picks one")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("--node-name must not be empty"))
	}
	if c.NodeIndex > 255 {
		errs = append(errs, fmt.Errorf("--node-index %d is not between 0 and 255", c.NodeIndex))
	}
	if !(c.Rate > 0) || c.Rate > 1e6 {
		errs = append(errs, fmt.Errorf("--rate %v is not between 0 (excluded) and 1000000", c.Rate))
	}
	if c.Count < 0 {
		errs = append(errs, fmt.Errorf("--count %d is negative", c.Count))
	}
	if c.Out == "" {
		errs = append(errs, errors.New("--out must not be empty"))
	}
	return errors.Join(errs...)
}

// Run appends lines to the configured file until the count is reached or
// ctx is done, which is no error.
func Run(ctx context.Context, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	seed := c.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	g := New(Options{NodeName: c.NodeName, NodeIndex: c.NodeIndex, Seed: seed})
	var w io.Writer = os.Stdout
	if c.Out != "-" {
		// O_APPEND makes each write land whole at the end, even with other
		// writers and across truncation.
		file, err := os.OpenFile(c.Out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		defer file.Close()
		w = file
	}
	err := WriteLines(ctx, w, g, c.Rate, c.Count)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// WriteLines writes count lines (0: until ctx is done) from g to w at rate
// lines per second, each line with its newline in a single Write, so that
// a reader never sees half a record. It returns ctx's error when ctx ends
// it.
func WriteLines(ctx context.Context, w io.Writer, g *Generator, rate float64, count int) error {
	if !(rate > 0) {
		return fmt.Errorf("rate %v is not positive", rate)
	}
	// Wake often enough for the rate, but not more than 100 times a second:
	// faster rates are written in small bursts.
	tick := max(time.Duration(float64(time.Second)/rate), 10*time.Millisecond)
	start, written := time.Now(), 0
	for {
		// One line at once, then as many as the elapsed time allows, but
		// at most a second's worth: after a stall, forget the time lost
		// rather than catch up with a burst.
		due := int(time.Since(start).Seconds()*rate) + 1 - written
		if burst := max(int(rate), 1); due > burst {
			due = burst
			start = time.Now().Add(-time.Duration(float64(written+burst-1) / rate * float64(time.Second)))
		}
		if count > 0 {
			due = min(due, count-written)
		}
		for range due {
			line, err := g.Next()
			if err != nil {
				return err
			}
			if _, err := w.Write(append(line, '\n')); err != nil {
				return fmt.Errorf("write flow: %w", err)
			}
			written++
		}
		if count > 0 && written >= count {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(tick):
		}
	}
}
