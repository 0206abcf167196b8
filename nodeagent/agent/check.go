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

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"flowscope.io/flowscope/nodeagent/store"
)

// CheckOptions are the flags of `flowscope-agent check`, which verifies a
// stopped agent's store: that its catalog, frames and posting lists agree.
type CheckOptions struct {
	DataDir string
	Output  string
}

// NewCheckOptions returns the defaults, the agent's data directory.
func NewCheckOptions() *CheckOptions {
	return &CheckOptions{DataDir: NewOptions().DataDir, Output: "text"}
}

// AddFlags registers the options on fs.
func (o *CheckOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir, "Data directory of the agent whose flow store is checked; the agent must be stopped.")
	fs.StringVarP(&o.Output, "output", "o", o.Output, "Output format: text or json.")
}

// Validate checks the options.
func (o *CheckOptions) Validate() []error {
	var errs []error
	if o.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	if o.Output != "text" && o.Output != "json" {
		errs = append(errs, fmt.Errorf("--output must be text or json, not %q", o.Output))
	}
	return errs
}

// checkResult is the JSON output of a check.
type checkResult struct {
	Store        string   `json:"store"`
	Blocks       int      `json:"blocks"`
	Flows        int      `json:"flows"`
	Frames       int      `json:"frames"`
	PostingLists int      `json:"postingLists"`
	Problems     []string `json:"problems"`
}

// ErrStoreUnsound is returned by Check when the store has problems.
var ErrStoreUnsound = errors.New("the flow store has problems")

// Check opens the store of o.DataDir, checks it and writes the report to w.
// It returns ErrStoreUnsound, after the report, when the store has problems.
func Check(o *CheckOptions, w io.Writer) error {
	dir := filepath.Join(o.DataDir, "store")
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
		// Opening would create an empty store and find it sound.
		return fmt.Errorf("no flow store in %s: %w", dir, err)
	}
	if err := checkUnlocked(dir); err != nil {
		return err
	}
	// Opening the store replays its write-ahead log, as the agent would
	// after a crash; the retention only matters to writes.
	st, err := store.Open(store.Options{Dir: dir, Retention: time.Hour})
	if err != nil {
		return err
	}
	r, err := st.Check()
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close flow store: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("check flow store in %s: %w", dir, err)
	}
	res := checkResult{Store: dir, Blocks: r.Blocks, Flows: r.Flows, Frames: r.Frames, PostingLists: r.PostingLists,
		Problems: r.Problems}
	if res.Problems == nil {
		res.Problems = []string{}
	}
	if o.Output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		err = enc.Encode(res)
	} else {
		err = writeCheckText(w, res)
	}
	if err != nil {
		return err
	}
	if len(res.Problems) > 0 {
		return ErrStoreUnsound
	}
	return nil
}

func writeCheckText(w io.Writer, r checkResult) error {
	if _, err := fmt.Fprintf(w, "%s: %d blocks, %d flows, %d frames, %d posting lists\n",
		r.Store, r.Blocks, r.Flows, r.Frames, r.PostingLists); err != nil {
		return err
	}
	for _, p := range r.Problems {
		if _, err := fmt.Fprintf(w, "problem: %s\n", p); err != nil {
			return err
		}
	}
	verdict := "sound"
	if len(r.Problems) > 0 {
		verdict = fmt.Sprintf("%d problems", len(r.Problems))
	}
	_, err := fmt.Fprintln(w, verdict)
	return err
}

// checkUnlocked fails when a process holds the store's directory lock.
// store.Open would wait for it, since a restarting agent may find its
// predecessor still exiting; a check should say at once that the agent is
// running. Badger takes the lock with flock on the directory.
func checkUnlocked(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("the flow store in %s is in use, by a running agent most likely: stop it first", dir)
		}
		return fmt.Errorf("lock flow store %s: %w", dir, err)
	}
	return unix.Flock(int(f.Fd()), unix.LOCK_UN)
}
