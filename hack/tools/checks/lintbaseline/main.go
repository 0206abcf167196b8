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

// Command lintbaseline compares golangci-lint's findings (its JSON output)
// with a baseline of known ones, so that lint can hold new code to every
// check while the findings that were there when a check came in are fixed
// one by one.
//
// A finding is known when the baseline has a line with its linter, its
// message and its source line (trimmed): not its file or line number, so a
// known finding stays known when its code moves. The file in each line is
// only for the reader. The baseline holds a line per finding, so a second
// copy of a known finding is new.
//
//	lintbaseline -baseline hack/lint-baseline.txt -findings lint.json          # fail on new findings
//	lintbaseline -baseline hack/lint-baseline.txt -findings lint.json -update  # write the baseline
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

const header = `# Known golangci-lint findings: make lint (hack/verify-lint.sh) fails on any
# finding that is not listed here. Fix them and delete their lines; never add
# one by hand (a false positive gets an exclusion with its reason in
# .golangci.yml instead). hack/verify-lint.sh --update-baseline rewrites this
# file from the current findings.
#
# file | linter | message | source line
# Only linter, message and source line are matched: the file is for the
# reader, so a finding that moves stays known.
`

type finding struct {
	file, linter, text, source string
	line, col                  int
}

func (f finding) key() string {
	return f.linter + " | " + f.text + " | " + f.source
}

func (f finding) baselineLine() string {
	return f.file + " | " + f.key()
}

type golangciOutput struct {
	Issues []struct {
		FromLinter  string
		Text        string
		SourceLines []string
		Pos         struct {
			Filename     string
			Line, Column int
		}
	}
}

func readFindings(r io.Reader) ([]finding, error) {
	var out golangciOutput
	if err := json.NewDecoder(r).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode golangci-lint JSON: %w", err)
	}
	fs := make([]finding, 0, len(out.Issues))
	for _, is := range out.Issues {
		f := finding{
			file:   is.Pos.Filename,
			linter: is.FromLinter,
			text:   oneLine(is.Text),
			line:   is.Pos.Line,
			col:    is.Pos.Column,
		}
		if len(is.SourceLines) > 0 {
			f.source = oneLine(is.SourceLines[0])
		}
		fs = append(fs, f)
	}
	sort.Slice(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.file != b.file {
			return a.file < b.file
		}
		if a.line != b.line {
			return a.line < b.line
		}
		return a.col < b.col
	})
	return fs, nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// readBaseline returns how many times the baseline lists each key.
func readBaseline(r io.Reader) (map[string]int, error) {
	known := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.SplitN(line, " | ", 4)
		if len(parts) < 3 {
			return nil, fmt.Errorf("line %d: want file | linter | message | source line", n)
		}
		if len(parts) == 3 {
			parts = append(parts, "")
		}
		known[strings.Join(parts[1:], " | ")]++
	}
	return known, sc.Err()
}

func main() {
	baselineFile := flag.String("baseline", "hack/lint-baseline.txt", "the baseline file")
	findingsFile := flag.String("findings", "", "golangci-lint's JSON output (--output.json.path)")
	update := flag.Bool("update", false, "write the current findings to the baseline")
	flag.Parse()
	if err := run(*baselineFile, *findingsFile, *update, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "lintbaseline: %v\n", err)
		os.Exit(1)
	}
}

func run(baselineFile, findingsFile string, update bool, stdout io.Writer) error {
	jf, err := os.Open(findingsFile)
	if err != nil {
		return err
	}
	defer jf.Close()
	findings, err := readFindings(jf)
	if err != nil {
		return err
	}

	if update {
		var b strings.Builder
		b.WriteString(header)
		for _, f := range findings {
			if f.linter == "typecheck" {
				return fmt.Errorf("%s:%d: the code does not compile (%s): fix that first", f.file, f.line, f.text)
			}
			b.WriteString(f.baselineLine() + "\n")
		}
		if err := os.WriteFile(baselineFile, []byte(b.String()), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "lint: wrote %d findings to %s\n", len(findings), baselineFile)
		return nil
	}

	known := map[string]int{}
	if bf, err := os.Open(baselineFile); err == nil {
		known, err = readBaseline(bf)
		bf.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", baselineFile, err)
		}
	} else if !os.IsNotExist(err) {
		return err
	}

	var fresh []finding
	for _, f := range findings {
		if k := f.key(); known[k] > 0 && f.linter != "typecheck" {
			known[k]--
			continue
		}
		fresh = append(fresh, f)
	}
	var gone []string
	for k, n := range known {
		for ; n > 0; n-- {
			gone = append(gone, k)
		}
	}
	sort.Strings(gone)

	for _, f := range fresh {
		fmt.Fprintf(stdout, "%s:%d:%d: %s (%s)\n\t%s\n", f.file, f.line, f.col, f.text, f.linter, f.source)
	}
	if len(gone) > 0 {
		fmt.Fprintf(stdout, "lint: %d findings of %s are fixed; delete their lines:\n", len(gone), baselineFile)
		for _, k := range gone {
			fmt.Fprintf(stdout, "\t%s\n", k)
		}
	}
	knownLeft := len(findings) - len(fresh)
	if len(fresh) > 0 {
		return fmt.Errorf("%d new findings (and %d known ones in %s)", len(fresh), knownLeft, baselineFile)
	}
	fmt.Fprintf(stdout, "lint: no new findings (%d known ones left in %s)\n", knownLeft, baselineFile)
	return nil
}
