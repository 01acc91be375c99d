package storage_test

import (
	"testing"

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
