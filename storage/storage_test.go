package storage_test

import (
	"testing"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

func TestConformanceLocal(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return storagetest.Local(t) })
}

func TestConformanceFakeGCS(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return storagetest.Open(t, storagetest.FakeGCS(t)) })
}

func TestConformanceGoFakeS3(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return storagetest.Open(t, storagetest.GoFakeS3(t)) })
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
