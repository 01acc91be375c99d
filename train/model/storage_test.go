package model

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/statjob/statjob/storage/storagetest"
)

// TestSaveLoadOnEveryStore writes a sharded checkpoint to each store
// (local, gs:// and s3:// emulators through the official SDKs) and loads it
// back unchanged.
func TestSaveLoadOnEveryStore(t *testing.T) {
	ctx := context.Background()
	cfg := mustConfig(t, tinyQwen2)
	orig := NewRandom(cfg, 7, 0.5)
	for _, b := range storagetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			err := orig.Save(ctx, b.Store, "models/tiny", SaveOptions{ShardBytes: 20000,
				Files: map[string][]byte{"tokenizer.json": []byte("{}")}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Store.Stat(ctx, "models/tiny/"+WeightsIndex); err != nil {
				t.Fatalf("%s: no shard index: %v", b.Store.URI("models/tiny"), err)
			}
			back, err := Load(ctx, b.Store, "models/tiny")
			if err != nil {
				t.Fatal(err)
			}
			sameWeights(t, back, orig, "on the way through "+b.Store.URI("models/tiny"))
		})
	}
}

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestSafetensorsStream: reading and writing hold one tensor at a time.
// While a tensor is handed out, the reader has consumed no more than the
// file up to that tensor plus its read buffer; while one is asked for, the
// writer has emitted everything before it but its write buffer.
func TestSafetensorsStream(t *testing.T) {
	const per = 1 << 20 // values per tensor: 4 MiB each as F32
	const bufSize = 1 << 20
	var heads []TensorHeader
	for i := range 8 {
		heads = append(heads, TensorHeader{Name: fmt.Sprintf("t%d", i), Shape: []int{per / 1024, 1024}})
	}
	var file bytes.Buffer
	got := 0
	err := WriteSafetensors(&file, "F32", heads, nil, func(name string) ([]float32, error) {
		var i int
		fmt.Sscanf(name, "t%d", &i)
		if minWritten := int64(i*per*4 - bufSize); int64(file.Len()) < minWritten {
			t.Errorf("asked for %s with %d bytes written: earlier tensors are held back", name, file.Len())
		}
		data := make([]float32, per)
		data[0], data[per-1] = float32(i), float32(-i)
		got++
		return data, nil
	})
	if err != nil || got != len(heads) {
		t.Fatalf("write: %v (%d tensors asked for)", err, got)
	}
	header := int64(file.Len()) - int64(len(heads)*per*4)
	cr := &countingReader{r: &file}
	seen := 0
	err = ReadSafetensors(cr, func(tt Tensor) error {
		end := header + int64(seen+1)*per*4
		if cr.n > end+bufSize {
			t.Errorf("%s handed out after %d bytes read, its end is at %d: the reader runs ahead", tt.Name, cr.n, end)
		}
		if tt.Name != heads[seen].Name || tt.Data[0] != float32(seen) || tt.Data[per-1] != float32(-seen) {
			t.Errorf("tensor %d: %s [%g … %g]", seen, tt.Name, tt.Data[0], tt.Data[per-1])
		}
		seen++
		return nil
	})
	if err != nil || seen != len(heads) {
		t.Fatalf("read: %v (%d tensors)", err, seen)
	}
}
