package model

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
)

// stFile assembles a safetensors file from a header length, header text and
// data section.
func stFile(n uint64, header string, body int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, n)
	b.WriteString(header)
	b.Write(make([]byte, body))
	return b.Bytes()
}

// TestReadSafetensorsMalformed feeds crafted files to ReadSafetensors, once
// from a reader that knows its size and once from a plain stream, and checks
// each fails with ErrSafetensors naming the tensor (or the header part at
// fault), without allocating what the header claims.
func TestReadSafetensorsMalformed(t *testing.T) {
	h := func(s string) (uint64, string) { return uint64(len(s)), s }
	for _, tc := range []struct {
		name    string
		n       uint64
		header  string
		body    int
		sized   string // error text wanted from a reader of known size; "" for success
		unsized string // the same from a plain stream
	}{
		{name: "valid", body: 12, sized: "", unsized: "",
			header: `{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2,1],"data_offsets":[8,12]}}`},
		{name: "overlap", body: 12, sized: `tensor "b" overlaps`, unsized: `tensor "b" overlaps`,
			header: `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`},
		{name: "gap", body: 20, sized: `tensor "b" starts at 12, after a gap from 8`, unsized: `tensor "b" starts at 12`,
			header: `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}`},
		{name: "not from 0", body: 12, sized: `tensor "a" starts at 4`, unsized: `tensor "a" starts at 4`,
			header: `{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`},
		{name: "offsets backwards", body: 8, sized: `tensor "a": data_offsets [8 0]`, unsized: `tensor "a": data_offsets`,
			header: `{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}`},
		{name: "size mismatch", body: 8, sized: `tensor "a": 8 bytes for shape [3] F32`, unsized: `tensor "a": 8 bytes`,
			header: `{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`},
		{name: "dtype mismatch", body: 8, sized: `tensor "a": 8 bytes for shape [2] BF16`, unsized: `tensor "a": 8 bytes`,
			header: `{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,8]}}`},
		{name: "unsupported dtype", body: 16, sized: `tensor "a": malformed safetensors: dtype "F64"`, unsized: `dtype "F64"`,
			header: `{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}`},
		{name: "negative dim", body: 0, sized: `tensor "a": 0 bytes for shape [-2 0]`, unsized: `tensor "a"`,
			header: `{"a":{"dtype":"F32","shape":[-2,0],"data_offsets":[0,0]}}`},
		{name: "shape overflow", body: 8, sized: `tensor "a": 8 bytes for shape`, unsized: `tensor "a"`,
			header: `{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}`},
		{name: "huge claimed size", body: 16,
			sized:   `the tensors end at byte 4398046511104 (last "a"), the data section has 16`,
			unsized: `tensor "a": 16 of 4398046511104 bytes read`,
			header:  `{"a":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4398046511104]}}`},
		{name: "truncated body", body: 8, sized: `(last "b"), the data section has 8`, unsized: `tensor "a": 8 of 16 bytes read`,
			header: `{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[1],"data_offsets":[16,18]}}`},
		{name: "trailing bytes", body: 12, sized: `the data section has 12`, unsized: "",
			header: `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`},
		{name: "bad JSON", body: 0, sized: "header JSON", unsized: "header JSON", header: `{"a":{"dtype":`},
		{name: "tensor not an object", body: 0, sized: `tensor "a"`, unsized: `tensor "a"`, header: `{"a":[1,2]}`},
		{name: "header past the end", n: 1000, header: `{}`, sized: "header of 1000 bytes", unsized: "header: 2 of 1000 bytes read"},
		{name: "header over the limit", n: 1 << 40, header: `{}`, sized: "header of 1099511627776 bytes", unsized: "header of 1099511627776 bytes"},
		{name: "no header length", n: 0, header: "", sized: "header length", unsized: "header length"},
	} {
		n := tc.n
		if tc.header != "" && n == 0 {
			n, _ = h(tc.header)
		}
		file := stFile(n, tc.header, tc.body)
		if tc.name == "no header length" {
			file = file[:5]
		}
		for _, sized := range []bool{true, false} {
			var r io.Reader = bytes.NewReader(file)
			want := tc.sized
			if !sized {
				r, want = struct{ io.Reader }{r}, tc.unsized
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			var got []string
			err := ReadSafetensors(r, func(tt Tensor) error {
				if len(tt.Data) != numElements(tt.Shape) {
					t.Errorf("%s: tensor %q has %d values for shape %v", tc.name, tt.Name, len(tt.Data), tt.Shape)
				}
				got = append(got, tt.Name)
				return nil
			})
			runtime.ReadMemStats(&after)
			if a := after.TotalAlloc - before.TotalAlloc; a > 16<<20 {
				t.Errorf("%s (sized %v): allocated %d bytes", tc.name, sized, a)
			}
			switch {
			case want == "" && err != nil:
				t.Errorf("%s (sized %v): %v", tc.name, sized, err)
			case want == "" && tc.name == "valid" && strings.Join(got, ",") != "a,b":
				t.Errorf("%s (sized %v): read tensors %v, want a,b", tc.name, sized, got)
			case want != "" && (!errors.Is(err, ErrSafetensors) || !strings.Contains(err.Error(), want)):
				t.Errorf("%s (sized %v): error %v, want one containing %s", tc.name, sized, err, want)
			}
		}
	}
}

// TestToBF16RoundsToNearestEven: as torch's .to(torch.bfloat16).
func TestToBF16RoundsToNearestEven(t *testing.T) {
	for _, c := range []struct{ in, want float32 }{
		{1, 1},
		{1 + 1.0/256, 1},                      // halfway, to the even 1.0
		{1 + 3.0/256, 1 + 1.0/64},             // halfway, to the even 1+2⁻⁶
		{1 + 1.0/256 + 1.0/4096, 1 + 1.0/128}, // past halfway: up
		{-2.5e-3, -0.0025024414},
		{float32(math.Inf(1)), float32(math.Inf(1))},
		{math.MaxFloat32, float32(math.Inf(1))}, // overflows, as torch
	} {
		if got := toBF16(c.in).Float32(); got != c.want {
			t.Errorf("toBF16(%g) = %g, want %g", c.in, got, c.want)
		}
	}
	if nan := toBF16(float32(math.NaN())).Float32(); nan == nan {
		t.Errorf("toBF16(NaN) = %g", nan)
	}
}
