package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

func TestConformanceLocal(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return storagetest.Local(t) })
}

// The in-process emulators keep objects in this test's heap and copy a
// growing upload at every chunk or part, which under -race makes 256 MiB take
// minutes; they get 64 MiB (still eight resumable chunks, thirteen parts).
// The 256 MiB object streams through local folders and the versitygw process.
var inProcess = storagetest.Options{LargeSize: 64 << 20}

// fake-gcs-server finds an object by formatting and comparing every stored
// name (quadratic in the bucket's size: 2,500 keys take minutes under
// -race), so its listing test stops at 1,001 keys: still two pages.
var fakeGCS = storagetest.Options{LargeSize: 64 << 20, ListKeys: 1001}

func TestConformanceFakeGCS(t *testing.T) {
	storagetest.RunWith(t, fakeGCS, func(t *testing.T) storage.Store { return storagetest.Open(t, storagetest.FakeGCS(t)) })
}

func TestConformanceGoFakeS3(t *testing.T) {
	storagetest.RunWith(t, inProcess, func(t *testing.T) storage.Store { return storagetest.Open(t, storagetest.GoFakeS3(t)) })
}

func TestConformanceVersitygw(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		c, ok := storagetest.Versitygw(t)
		if !ok {
			t.Skip("versitygw not installed")
		}
		return storagetest.Open(t, c)
	})
}

// Stores that reject the SDK's default checksums get them only where
// required; the contract holds the same.
func TestConformanceVersitygwChecksumsWhenRequired(t *testing.T) {
	o := storagetest.Options{LargeSize: 24 << 20, Tests: []string{"RoundTrip", "Empty", "Range", "CreateIfAbsent", "CompareAndSwap", "Copy", "Large"}}
	storagetest.RunWith(t, o, func(t *testing.T) storage.Store {
		c, ok := storagetest.Versitygw(t)
		if !ok {
			t.Skip("versitygw not installed")
		}
		c.S3.ChecksumsWhenRequired = true
		return storagetest.Open(t, c)
	})
}

// TestReadAll: the whole object comes back; an absent one is ErrNotExist
// named by its URI, and a read that fails midway names the key.
func TestReadAll(t *testing.T) {
	ctx := context.Background()
	for name, st := range map[string]storage.Store{
		"local":    storagetest.Local(t),
		"fake-gcs": storagetest.Open(t, storagetest.FakeGCS(t)),
	} {
		want := []byte("config.json's bytes\n")
		if _, err := st.Put(ctx, "m/config.json", bytes.NewReader(want), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if got, err := storage.ReadAll(ctx, st, "m/config.json"); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: ReadAll = %q, %v; want %q", name, got, err, want)
		}
		_, err := storage.ReadAll(ctx, st, "m/absent.json")
		if !errors.Is(err, storage.ErrNotExist) || !strings.Contains(err.Error(), st.URI("m/absent.json")) {
			t.Errorf("%s: absent object: %v, want ErrNotExist naming %s", name, err, st.URI("m/absent.json"))
		}
	}
	broken := errors.New("connection reset")
	_, err := storage.ReadAll(ctx, failingGetter{broken}, "m/model.safetensors")
	if !errors.Is(err, broken) || !strings.Contains(err.Error(), "m/model.safetensors") {
		t.Errorf("failed read: %v, want it wrapped and naming the key", err)
	}
}

// failingGetter's objects fail on their first read.
type failingGetter struct{ err error }

func (f failingGetter) Get(context.Context, string) (io.ReadCloser, error) {
	return io.NopCloser(iotest.ErrReader(f.err)), nil
}
