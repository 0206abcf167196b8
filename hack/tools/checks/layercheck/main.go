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

// Command layercheck fails when a package of a Go module depends, through
// its non-test imports, on a package that the rules of a layers file
// (hack/layers.txt) keep it from, and prints the chain of imports that
// does it.
//
//	layercheck -rules hack/layers.txt -dir .              # runs go list -deps ./... in dir
//	layercheck -rules rules.txt -module m -graph g.txt    # a graph in go list's -f format
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// listFormat is the go list -f template whose output readGraph reads.
const listFormat = `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`

func main() {
	rulesFile := flag.String("rules", "hack/layers.txt", "the layers file")
	dir := flag.String("dir", ".", "the module's directory, where go list runs")
	module := flag.String("module", "", "the module path (default: go list -m in -dir)")
	graphFile := flag.String("graph", "", "read the package graph from this file (- for stdin) instead of running go list")
	flag.Parse()
	if err := run(*rulesFile, *dir, *module, *graphFile, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "layercheck: %v\n", err)
		os.Exit(1)
	}
}

func run(rulesFile, dir, module, graphFile string, stdout io.Writer) error {
	f, err := os.Open(rulesFile)
	if err != nil {
		return err
	}
	defer f.Close()
	rules, err := parseRules(rulesFile, f)
	if err != nil {
		return err
	}

	if module == "" {
		out, err := goCmd(dir, "list", "-m", "-f", "{{.Path}}")
		if err != nil {
			return err
		}
		module = strings.TrimSpace(string(out))
	}
	var graphText io.Reader
	switch graphFile {
	case "":
		out, err := goCmd(dir, "list", "-deps", "-f", listFormat, "./...")
		if err != nil {
			return err
		}
		graphText = bytes.NewReader(out)
	case "-":
		graphText = os.Stdin
	default:
		gf, err := os.Open(graphFile)
		if err != nil {
			return err
		}
		defer gf.Close()
		graphText = gf
	}
	g, err := readGraph(module, graphText)
	if err != nil {
		return err
	}

	violations, err := check(g, rules)
	if err != nil {
		return err
	}
	if len(violations) == 0 {
		fmt.Fprintf(stdout, "layers: %d packages of %s keep the %d rules of %s\n", len(g.imports), module, len(rules), rulesFile)
		return nil
	}
	for _, v := range violations {
		fmt.Fprintf(stdout, "%s\n\n", v)
	}
	noun := "violations"
	if len(violations) == 1 {
		noun = "violation"
	}
	return fmt.Errorf("%d layering %s: move the import, or change %s and say why", len(violations), noun, rulesFile)
}

func goCmd(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}
