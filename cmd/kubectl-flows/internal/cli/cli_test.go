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

package cli

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func TestPrintError(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "flows.flowscope.io", Resource: "flows"}, "",
		errors.New(`User "alice" cannot list resource "flows" in API group "flows.flowscope.io" in the namespace "payments"`))
	for _, tc := range []struct {
		err  error
		want string
	}{
		{forbidden, `Error from server (Forbidden): flows.flows.flowscope.io is forbidden: User "alice" cannot list resource "flows" in API group "flows.flowscope.io" in the namespace "payments"` + "\n"},
		{fmt.Errorf("list flows: %w", apierrors.NewBadRequest("field label not supported: x")), "Error from server (BadRequest): field label not supported: x\n"},
		{errors.New("--all and --last exclude each other"), "error: --all and --last exclude each other\n"},
	} {
		var b bytes.Buffer
		PrintError(&b, tc.err)
		if b.String() != tc.want {
			t.Errorf("got %q, want %q", b.String(), tc.want)
		}
	}
}

func TestCommands(t *testing.T) {
	cmd := NewCommand(genericiooptions.NewTestIOStreamsDiscard())
	for _, name := range []string{"observe", "top", "ui"} {
		if c, _, err := cmd.Find([]string{name}); err != nil || c.Name() != name {
			t.Errorf("kubectl flows %s: %v", name, err)
		}
	}
	for _, f := range []string{"kubeconfig", "context", "namespace", "as"} {
		if cmd.PersistentFlags().Lookup(f) == nil {
			t.Errorf("no --%s", f)
		}
	}
	ui, _, _ := cmd.Find([]string{"ui"})
	for flag, def := range map[string]string{"address": "127.0.0.1", "port": "7070", "open": "true"} {
		if f := ui.Flags().Lookup(flag); f == nil || f.DefValue != def {
			t.Errorf("ui --%s: %+v, want default %s", flag, f, def)
		}
	}
}
