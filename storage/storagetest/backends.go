package storagetest

import (
	"context"
	"os"
	"testing"

	"github.com/statjob/statjob/storage"
)

// Backend is one fresh, empty store for a test.
type Backend struct {
	Name  string // "local", "gcs-fake", "s3-gofakes3", "s3-versitygw"
	Store storage.Store
}

// Strict reports whether a missing test tool must fail the test rather
// than skip it (STATJOB_TEST_STRICT=1, as `make test` sets).
func Strict() bool { return os.Getenv("STATJOB_TEST_STRICT") == "1" }

// Local returns a store over a fresh temp folder, closed when t ends.
func Local(t testing.TB) storage.Store {
	t.Helper()
	return mustOpen(t, storage.Config{Root: t.TempDir()})
}

func mustOpen(t testing.TB, c storage.Config) storage.Store {
	t.Helper()
	s, err := c.Open(context.Background())
	if err != nil {
		t.Fatalf("open %s: %v", c.Root, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Backends returns one fresh store per available backend, each empty and
// torn down (servers stopped, folders removed) when t ends.
func Backends(t testing.TB) []Backend {
	t.Helper()
	return []Backend{{"local", Local(t)}}
}
