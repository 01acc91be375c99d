package model

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"

	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"
	"github.com/x448/float16"
)

// The safetensors format: an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
// {…}}, then the raw little-endian tensor bytes. It is read and written here
// as a stream (the Go libraries for it want the whole file in memory), so a
// checkpoint of any size passes through with memory bounded by its largest
// tensor, from any io.Reader (a local file, a gs:// or s3:// object).

// ErrSafetensors marks a malformed safetensors file.
var ErrSafetensors = errors.New("malformed safetensors")

// Tensor is one named float32 tensor of a checkpoint, in row-major order.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

type tensorInfo struct {
	DType   string  `json:"dtype"`
	Shape   []int   `json:"shape"`
	Offsets []int64 `json:"data_offsets"`
}

// maxHeader bounds the JSON header (the format's own limit is 100 MB).
const maxHeader = 100 << 20

// ReadSafetensors streams the tensors of one safetensors file in file order,
// converting BF16/F16/F32 to float32, and calls fn for each. The Tensor
// passed to fn is not retained. The header is checked in full before any
// tensor is read: the data offsets must tile the data section from 0 without
// gaps or overlaps, each tensor's byte length must match its shape and dtype,
// and, where r can tell its size (a file, a bytes.Reader), the data section
// must end where the last tensor does. Tensors are read in bounded chunks,
// so a truncated file fails with an error, whatever sizes its header claims.
// Errors name the tensor; callers add the file.
func ReadSafetensors(r io.Reader, fn func(Tensor) error) error {
	total, sized := remaining(r)
	br := bufio.NewReaderSize(r, 1<<20)
	entries, err := readHeader(br, total, sized)
	if err != nil {
		return err
	}

	buf := make([]byte, readChunk)
	for _, e := range entries {
		size, _ := elemSize(e.DType)
		count := int((e.Offsets[1] - e.Offsets[0]) / int64(size))
		capHint := count // validated against the file's size
		if !sized {
			capHint = min(count, readChunk/size) // grows only as the bytes arrive
		}
		t := Tensor{Name: e.name, Shape: e.Shape, Data: make([]float32, 0, capHint)}
		for left := e.Offsets[1] - e.Offsets[0]; left > 0; {
			b := buf[:min(left, readChunk)]
			if got, err := io.ReadFull(br, b); err != nil {
				nb := e.Offsets[1] - e.Offsets[0]
				return fmt.Errorf("%w: tensor %q: %d of %d bytes read: %v", ErrSafetensors, e.name, nb-left+int64(got), nb, err)
			}
			k, m := len(t.Data), len(b)/size
			t.Data = slices.Grow(t.Data, m)[:k+m]
			decode(e.DType, b, t.Data[k:])
			left -= int64(len(b))
		}
		if err := fn(t); err != nil {
			return err
		}
	}
	return nil
}

// ReadSafetensorsHeader reads only the header of a safetensors file: its
// tensors' names and shapes in file order, checked as ReadSafetensors checks
// them (the file's size only where r can tell it). No tensor data is read.
func ReadSafetensorsHeader(r io.Reader) ([]TensorHeader, error) {
	total, sized := remaining(r)
	entries, err := readHeader(bufio.NewReaderSize(r, 4<<10), total, sized)
	if err != nil {
		return nil, err
	}
	hs := make([]TensorHeader, len(entries))
	for i, e := range entries {
		hs[i] = TensorHeader{Name: e.name, Shape: e.Shape}
	}
	return hs, nil
}

// headerEntry is one tensor of a safetensors header.
type headerEntry struct {
	name string
	tensorInfo
}

// readHeader reads and checks the header of a safetensors file (total bytes
// in all, when sized) and returns its tensors in data order.
func readHeader(br *bufio.Reader, total int64, sized bool) ([]headerEntry, error) {
	var n uint64
	if err := binary.Read(br, binary.LittleEndian, &n); err != nil {
		return nil, fmt.Errorf("%w: header length: %v", ErrSafetensors, err)
	}
	if n > maxHeader || (sized && n > uint64(total-8)) {
		return nil, fmt.Errorf("%w: header of %d bytes", ErrSafetensors, n)
	}
	header, err := io.ReadAll(io.LimitReader(br, int64(n)))
	if err != nil || uint64(len(header)) != n {
		return nil, fmt.Errorf("%w: header: %d of %d bytes read: %v", ErrSafetensors, len(header), n, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(header, &raw); err != nil {
		return nil, fmt.Errorf("%w: header JSON: %v", ErrSafetensors, err)
	}
	var entries []headerEntry
	for name, msg := range raw {
		if name == "__metadata__" {
			continue
		}
		var info tensorInfo
		if err := json.Unmarshal(msg, &info); err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %v", ErrSafetensors, name, err)
		}
		if len(info.Offsets) != 2 || info.Offsets[0] < 0 || info.Offsets[1] < info.Offsets[0] {
			return nil, fmt.Errorf("%w: tensor %q: data_offsets %v", ErrSafetensors, name, info.Offsets)
		}
		size, err := elemSize(info.DType)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		want, ok := byteLen(info.Shape, size)
		if !ok || info.Offsets[1]-info.Offsets[0] != want {
			return nil, fmt.Errorf("%w: tensor %q: %d bytes for shape %v %s", ErrSafetensors, name, info.Offsets[1]-info.Offsets[0], info.Shape, info.DType)
		}
		entries = append(entries, headerEntry{name, info})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Offsets[0] < entries[j].Offsets[0] })
	var end int64
	for _, e := range entries {
		if e.Offsets[0] < end {
			return nil, fmt.Errorf("%w: tensor %q overlaps the previous one (data_offsets %v)", ErrSafetensors, e.name, e.Offsets)
		}
		if e.Offsets[0] > end {
			return nil, fmt.Errorf("%w: tensor %q starts at %d, after a gap from %d", ErrSafetensors, e.name, e.Offsets[0], end)
		}
		end = e.Offsets[1]
	}
	if data := total - 8 - int64(n); sized && end != data {
		last := "(none)"
		if len(entries) > 0 {
			last = entries[len(entries)-1].name
		}
		return nil, fmt.Errorf("%w: the tensors end at byte %d (last %q), the data section has %d", ErrSafetensors, end, last, data)
	}
	return entries, nil
}

// readChunk is how many bytes of a tensor ReadSafetensors reads at a time (a
// multiple of every dtype's size).
const readChunk = 1 << 20

// byteLen is the size in bytes of a tensor of the given shape and element
// size; ok is false for a negative dimension or a size past math.MaxInt.
func byteLen(shape []int, size int) (n int64, ok bool) {
	n = int64(size)
	for _, d := range shape {
		if d < 0 || (d > 0 && n > math.MaxInt/int64(d)) {
			return 0, false
		}
		n *= int64(d)
	}
	return n, true
}

// remaining reports how many bytes r has left, where it can tell: a regular
// file, or a reader with Len (bytes.Reader, bytes.Buffer, strings.Reader).
func remaining(r io.Reader) (int64, bool) {
	switch r := r.(type) {
	case interface{ Len() int }:
		return int64(r.Len()), true
	case *os.File:
		fi, err := r.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return 0, false
		}
		pos, err := r.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, false
		}
		return fi.Size() - pos, true
	}
	return 0, false
}

func elemSize(dtype string) (int, error) {
	switch dtype {
	case "F32":
		return 4, nil
	case "BF16", "F16":
		return 2, nil
	}
	return 0, fmt.Errorf("%w: dtype %q (BF16, F16, F32 are supported)", ErrSafetensors, dtype)
}

func decode(dtype string, b []byte, out []float32) {
	le := binary.LittleEndian
	switch dtype {
	case "F32":
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
	case "BF16":
		for i := range out {
			out[i] = math.Float32frombits(uint32(le.Uint16(b[2*i:])) << 16)
		}
	case "F16":
		for i := range out {
			out[i] = float16.Frombits(le.Uint16(b[2*i:])).Float32()
		}
	}
}

func encode(dtype string, in []float32, b []byte) {
	le := binary.LittleEndian
	switch dtype {
	case "F32":
		for i, v := range in {
			le.PutUint32(b[4*i:], math.Float32bits(v))
		}
	case "BF16":
		for i, v := range in {
			le.PutUint16(b[2*i:], toBF16(v).Bits())
		}
	case "F16":
		for i, v := range in {
			le.PutUint16(b[2*i:], float16.Fromfloat32(v).Bits())
		}
	}
}

// toBF16 rounds v to the nearest bfloat16, ties to even, as PyTorch's
// .to(torch.bfloat16) does (bfloat16.FromFloat32 truncates). NaN stays NaN.
func toBF16(v float32) bfloat16.BFloat16 {
	if v != v {
		return bfloat16.BFloat16(math.Float32bits(v)>>16 | 0x40) // a quiet NaN
	}
	b := math.Float32bits(v)
	return bfloat16.BFloat16((b + 0x7fff + (b>>16)&1) >> 16)
}

// TensorHeader is what WriteSafetensors needs to know before any data: the
// names and shapes, in the order the data will come.
type TensorHeader struct {
	Name  string
	Shape []int
}

// WriteSafetensors writes a safetensors file with the given tensors stored
// as dtype ("F32", "BF16" or "F16"). get is called once per tensor, in the
// order of heads, so only one tensor needs to be in memory at a time.
func WriteSafetensors(w io.Writer, dtype string, heads []TensorHeader, metadata map[string]string, get func(name string) ([]float32, error)) error {
	size, err := elemSize(dtype)
	if err != nil {
		return err
	}
	header := map[string]any{}
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	for _, h := range heads {
		n := int64(size) * int64(numElements(h.Shape))
		shape := h.Shape
		if shape == nil {
			shape = []int{}
		}
		header[h.Name] = tensorInfo{DType: dtype, Shape: shape, Offsets: []int64{off, off + n}}
		off += n
	}
	js, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(js)%8 != 0 { // the format pads the header with spaces to align data
		js = append(js, ' ')
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := binary.Write(bw, binary.LittleEndian, uint64(len(js))); err != nil {
		return err
	}
	if _, err := bw.Write(js); err != nil {
		return err
	}
	var buf []byte
	for _, h := range heads {
		data, err := get(h.Name)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", h.Name, err)
		}
		count := numElements(h.Shape)
		if len(data) != count {
			return fmt.Errorf("tensor %q: %d values for shape %v", h.Name, len(data), h.Shape)
		}
		if cap(buf) < count*size {
			buf = make([]byte, count*size)
		}
		buf = buf[:count*size]
		encode(dtype, data, buf)
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// numElements is the number of values in a tensor of the given shape.
func numElements(dims []int) int {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return n
}
