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

package hpackjoin

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// got is what a decoder made of one field; name and value are "?" when
// not known.
type got struct{ name, value string }

func decode(t testing.TB, d *Decoder, block []byte, truncated bool) ([]got, error) {
	t.Helper()
	var out []got
	err := d.Decode(block, truncated, func(f *Field) {
		g := got{name: "?", value: "?"}
		if f.Known {
			g.name = f.Name
		}
		if v, ok := f.Value(); ok && f.Known {
			g.value = v
		}
		out = append(out, g)
	})
	return out, err
}

func fields(hf []hpack.HeaderField) []got {
	out := make([]got, len(hf))
	for i, f := range hf {
		out[i] = got{f.Name, f.Value}
	}
	return out
}

// encoder encodes header lists the way Go's HTTP/2 stacks do.
type encoder struct {
	buf bytes.Buffer
	enc *hpack.Encoder
}

func newEncoder() *encoder {
	e := &encoder{}
	e.enc = hpack.NewEncoder(&e.buf)
	return e
}

func (e *encoder) block(t testing.TB, hf ...hpack.HeaderField) []byte {
	t.Helper()
	e.buf.Reset()
	for _, f := range hf {
		if err := e.enc.WriteField(f); err != nil {
			t.Fatal(err)
		}
	}
	return bytes.Clone(e.buf.Bytes())
}

func hf(kv ...string) []hpack.HeaderField {
	var out []hpack.HeaderField
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func TestStaticTable(t *testing.T) {
	// x/net's encoder sends a field equal to a static entry as its index:
	// so this table and RFC 7541's (x/net's copy) agree entry by entry.
	for i, e := range staticTable {
		enc := newEncoder()
		b := enc.block(t, hpack.HeaderField{Name: e.name, Value: e.value})
		if want := []byte{0x80 | byte(i+1)}; !bytes.Equal(b, want) {
			t.Errorf("entry %d %s: %q: x/net encodes %x, want %x", i+1, e.name, e.value, b, want)
		}
	}
}

func TestDecodeMatchesXNet(t *testing.T) {
	// Random header lists over a small vocabulary (so that the encoder
	// indexes, refers back, evicts), with table size changes: a decoder
	// from the start decodes exactly what x/net's does.
	r := rand.New(rand.NewPCG(1, 2))
	enc := newEncoder()
	ref := hpack.NewDecoder(DefaultTableSize, nil)
	d := NewDecoder(64 << 10)
	for n := range 3000 {
		if n%500 == 499 {
			enc.enc.SetMaxDynamicTableSizeLimit(uint32(r.IntN(DefaultTableSize + 1)))
		}
		b := enc.block(t, randomFields(r)...)
		want, err := ref.DecodeFull(b)
		if err != nil {
			t.Fatalf("block %d: x/net: %v", n, err)
		}
		g, err := decode(t, d, b, false)
		if err != nil {
			t.Fatalf("block %d: %v", n, err)
		}
		if fmt.Sprint(g) != fmt.Sprint(fields(want)) {
			t.Fatalf("block %d:\n got %v\nwant %v", n, g, fields(want))
		}
	}
}

func randomFields(r *rand.Rand) []hpack.HeaderField {
	names := []string{":path", ":authority", "content-type", "grpc-status", "x-request-id", "user-agent", "x-" + fmt.Sprint(r.IntN(40))}
	var out []hpack.HeaderField
	for range 1 + r.IntN(8) {
		f := hpack.HeaderField{Name: names[r.IntN(len(names))], Value: fmt.Sprintf("v%d", r.IntN(60))}
		if r.IntN(10) == 0 {
			f.Value = string(bytes.Repeat([]byte{'a' + byte(r.IntN(26))}, r.IntN(900)))
		}
		f.Sensitive = r.IntN(20) == 0
		out = append(out, f)
	}
	return out
}

func TestLateJoinNeverWrong(t *testing.T) {
	// Join after k blocks: every field is emitted and every known field
	// is right (TestLateJoinScenario shows which ones are known).
	for _, k := range []int{1, 10, 100, 700} {
		r := rand.New(rand.NewPCG(3, uint64(k)))
		enc := newEncoder()
		ref := hpack.NewDecoder(DefaultTableSize, nil)
		late := NewLateDecoder(64 << 10)
		var known, unknown int
		for n := range 1500 {
			b := enc.block(t, randomFields(r)...)
			want, err := ref.DecodeFull(b)
			if err != nil {
				t.Fatal(err)
			}
			if n < k {
				continue
			}
			g, err := decode(t, late, b, false)
			if err != nil {
				t.Fatalf("k=%d block %d: %v", k, n, err)
			}
			if len(g) != len(want) {
				t.Fatalf("k=%d block %d: %d fields, want %d", k, n, len(g), len(want))
			}
			for i, w := range want {
				switch {
				case g[i].name == "?":
					unknown++
				case g[i] != (got{w.Name, w.Value}):
					t.Fatalf("k=%d block %d field %d: got %v, want %v", k, n, i, g[i], w)
				default:
					known++
				}
			}
		}
		t.Logf("join after %d blocks: %d fields known, %d unknown", k, known, unknown)
		if known == 0 || (k > 1 && unknown == 0) {
			t.Errorf("k=%d: %d known, %d unknown", k, known, unknown)
		}
	}
}

func TestLateJoinScenario(t *testing.T) {
	enc := newEncoder()
	before := [][]hpack.HeaderField{
		hf(":method", "POST", ":path", "/pkg.Svc/Old", "content-type", "application/grpc", "x-custom", "1"),
		hf(":status", "200", "grpc-status", "0"),
	}
	for _, l := range before {
		enc.block(t, l...)
	}
	d := NewLateDecoder(64 << 10)
	steps := []struct {
		send []hpack.HeaderField
		want string
	}{
		// Indexed before the join: unknown; static entries: known.
		{hf(":method", "POST", ":path", "/pkg.Svc/Old", "content-type", "application/grpc"),
			"[{:method POST} {? ?} {? ?}]"},
		// A new path has a static name: known, and now in the log.
		{hf(":method", "POST", ":path", "/pkg.Svc/New"), "[{:method POST} {:path /pkg.Svc/New}]"},
		{hf(":path", "/pkg.Svc/New"), "[{:path /pkg.Svc/New}]"},
		// A new value under a name from before the join: a placeholder,
		// whose later references stay unknown but keep the count right.
		{hf("x-custom", "2"), "[{? ?}]"},
		{hf("x-custom", "2", ":path", "/pkg.Svc/New", "x-fresh", "yes"), "[{? ?} {:path /pkg.Svc/New} {x-fresh yes}]"},
		{hf("x-fresh", "yes", ":path", "/pkg.Svc/Old", ":path", "/pkg.Svc/New"), "[{x-fresh yes} {? ?} {:path /pkg.Svc/New}]"},
	}
	for i, s := range steps {
		g, err := decode(t, d, enc.block(t, s.send...), false)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(g) != s.want {
			t.Errorf("step %d: got %v, want %s", i, g, s.want)
		}
	}
	if d.Len() != 3 {
		t.Errorf("log holds %d entries, want 3 (/pkg.Svc/New, the x-custom placeholder, x-fresh)", d.Len())
	}
}

func TestTruncated(t *testing.T) {
	// A block cut anywhere decodes to a prefix of its fields, and never
	// to a wrong one.
	enc := newEncoder()
	enc.block(t, hf(":path", "/a", "x-a", "1")...)
	b := enc.block(t, hf(":method", "GET", ":path", "/a", ":path", "/b", "x-long", "0123456789abcdef", "x-a", "1", ":status", "404")...)
	full := "[{:method GET} {:path /a} {:path /b} {x-long 0123456789abcdef} {x-a 1} {:status 404}]"
	for cut := 0; cut <= len(b); cut++ {
		d := NewDecoder(DefaultTableSize)
		// Rebuild the table the block refers to.
		if _, err := decode(t, d, newEncoderBlock(t), false); err != nil {
			t.Fatal(err)
		}
		g, err := decode(t, d, b[:cut], true)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		s := fmt.Sprint(g)
		if full[:len(s)-1] != s[:len(s)-1] {
			t.Fatalf("cut %d: got %s, not a prefix of %s", cut, s, full)
		}
		if cut == len(b) && s != full {
			t.Fatalf("whole block: got %s, want %s", s, full)
		}
		if cut < len(b) {
			if _, err := decode(t, NewDecoder(DefaultTableSize), b[:cut], false); err == nil && cut > 0 && !isBoundary(b, cut) {
				t.Fatalf("cut %d: an untruncated decode of a partial representation succeeded", cut)
			}
		}
	}
}

func newEncoderBlock(t *testing.T) []byte {
	return newEncoder().block(t, hf(":path", "/a", "x-a", "1")...)
}

// isBoundary reports whether cut falls between representations of b.
func isBoundary(b []byte, cut int) bool {
	d := NewLateDecoder(DefaultTableSize)
	return d.Decode(b[:cut], false, func(*Field) {}) == nil
}

func TestEviction(t *testing.T) {
	// Late: 200 insertions of 132 bytes; a 4096-byte table keeps 31 of
	// them, and the log keeps no more than a table could.
	d := NewLateDecoder(64 << 10)
	enc := newEncoder()
	for i := range 200 {
		if _, err := decode(t, d, enc.block(t, hpack.HeaderField{Name: "x-n", Value: fmt.Sprintf("%097d", i)}), false); err != nil {
			t.Fatal(err)
		}
	}
	if d.Size() > DefaultTableSize || d.Len() != DefaultTableSize/132 {
		t.Errorf("log: %d entries, %d bytes; want %d entries within %d bytes", d.Len(), d.Size(), DefaultTableSize/132, DefaultTableSize)
	}
	// A larger SETTINGS value raises the bound (a table may hold more);
	// a size update fixes it.
	d.SetPeerLimit(1 << 20)
	for i := range 1000 {
		if _, err := decode(t, d, enc.block(t, hpack.HeaderField{Name: "x-n", Value: fmt.Sprintf("%097d", i+1000)}), false); err != nil {
			t.Fatal(err)
		}
	}
	if d.Size() > 64<<10 || d.Size() < 60<<10 {
		t.Errorf("log: %d bytes, want about the 64 KiB limit", d.Size())
	}
	if _, err := decode(t, d, []byte{0x3f, 0xe1, 0x1f}, false); err != nil { // size update to 4096
		t.Fatal(err)
	}
	if d.Size() > DefaultTableSize {
		t.Errorf("after a size update to 4096: %d bytes", d.Size())
	}
	// An entry larger than the table empties it.
	big := append([]byte{0x40, 5, 'x', '-', 'b', 'i', 'g', 0x7f, 0x89, 0x26}, make([]byte, 5000)...)
	if _, err := decode(t, d, big, false); err != nil {
		t.Fatal(err)
	}
	if d.Len() != 0 {
		t.Errorf("after an oversized insertion: %d entries", d.Len())
	}
}

func TestMalformed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		block []byte
	}{
		{"index 0", []byte{0x80}},
		{"integer overflow", append([]byte{0xff}, bytes.Repeat([]byte{0xff}, 10)...)},
		{"string past the end", []byte{0x40, 0x05, 'a'}},
		{"integer past the end", []byte{0x7f}},
		{"invalid Huffman name", []byte{0x40, 0x81, 0xff, 0x00}},
		{"invalid Huffman indexed value", []byte{0x44, 0x81, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decode(t, NewDecoder(DefaultTableSize), tc.block, false); err == nil {
				t.Error("no error")
			}
			if Valid(tc.block) {
				t.Error("Valid")
			}
		})
	}
	if !Valid([]byte{0x82, 0x84, 0xbe}) || Valid([]byte{0x00, 0x81, 0xff, 0x00}) {
		t.Error("Valid: indexed fields are valid whatever the table; a lazy invalid Huffman value is not")
	}
}

// FuzzDecode feeds random header blocks to x/net's decoder and to this
// one from the start and joined after each block: wherever x/net decodes,
// the decoder from the start agrees exactly, and a late one emits as many
// fields, every known one right.
func FuzzDecode(f *testing.F) {
	enc := newEncoder()
	var seed []byte
	for _, l := range [][]hpack.HeaderField{
		hf(":method", "POST", ":path", "/pkg.Svc/M", "content-type", "application/grpc", "te", "trailers"),
		hf(":status", "200", "content-type", "application/grpc"),
		hf("grpc-status", "0"),
		hf(":method", "POST", ":path", "/pkg.Svc/M", "content-type", "application/grpc", "te", "trailers"),
	} {
		b := enc.block(f, l...)
		seed = append(append(seed, byte(len(b))), b...)
	}
	f.Add(seed)
	f.Add([]byte{3, 0x3f, 0xe1, 0x1f, 2, 0x40, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		var blocks [][]byte
		for len(data) > 0 && len(blocks) < 32 {
			n := min(int(data[0]), len(data)-1)
			blocks = append(blocks, data[1:1+n])
			data = data[1+n:]
		}
		ref := hpack.NewDecoder(DefaultTableSize, nil)
		exact := NewDecoder(DefaultTableSize)
		lates := make([]*Decoder, len(blocks))
		for i, b := range blocks {
			lates[i] = NewLateDecoder(DefaultTableSize)
			want, err := ref.DecodeFull(b)
			if err != nil {
				for _, l := range lates[:i+1] { // must not panic
					_, _ = decode(t, l, b, i%2 == 0)
				}
				return
			}
			g, err := decode(t, exact, b, false)
			if err != nil || fmt.Sprint(g) != fmt.Sprint(fields(want)) {
				t.Fatalf("block %d: got %v, %v; x/net %v", i, g, err, fields(want))
			}
			for j, l := range lates[:i+1] {
				g, err := decode(t, l, b, false)
				if err != nil || len(g) != len(want) {
					t.Fatalf("joined at %d, block %d: got %v, %v; x/net %v", j, i, g, err, fields(want))
				}
				for k, w := range want {
					if g[k].name != "?" && g[k] != (got{w.Name, w.Value}) {
						t.Fatalf("joined at %d, block %d, field %d: got %v, want %v", j, i, k, g[k], w)
					}
				}
				if l.Size() > DefaultTableSize {
					t.Fatalf("late log of %d bytes", l.Size())
				}
			}
		}
	})
}
