package storagetest

import (
	"context"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/statjob/statjob/storage"
)

// Bucket is the bucket every emulator is started with.
const Bucket = "statjob-test"

// Backend is one fresh, empty store for a test.
type Backend struct {
	Name  string // "local", "gcs-fake", "s3-gofakes3", "s3-versitygw"
	Store storage.Store
}

// Strict reports whether a missing test tool must fail the test rather
// than skip it (STATJOB_TEST_STRICT=1, as `make test` sets).
func Strict() bool { return os.Getenv("STATJOB_TEST_STRICT") == "1" }

// Backends returns one fresh store per available backend, each empty and
// torn down (servers stopped, folders removed) when t ends. versitygw is
// included when installed; missing, it is left out with a log line, or t
// fails under STATJOB_TEST_STRICT=1.
func Backends(t testing.TB) []Backend {
	t.Helper()
	bs := []Backend{
		{"local", Local(t)},
		{"gcs-fake", Open(t, FakeGCS(t))},
		{"s3-gofakes3", Open(t, GoFakeS3(t))},
	}
	if c, ok := Versitygw(t); ok {
		bs = append(bs, Backend{"s3-versitygw", Open(t, c)})
	}
	return bs
}

// Local returns a store over a fresh temp folder.
func Local(t testing.TB) storage.Store {
	t.Helper()
	return Open(t, storage.Config{Root: t.TempDir()})
}

// Open opens c, failing t on error, and closes the store when t ends.
func Open(t testing.TB, c storage.Config) storage.Store {
	t.Helper()
	s, err := c.Open(context.Background())
	if err != nil {
		t.Fatalf("open %s: %v", c.Root, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testTuning makes uploads cross chunk and part boundaries at test sizes.
func testTuning(c storage.Config) storage.Config {
	c.GCS.ChunkSize = 4 << 20
	c.S3.PartSize = 5 << 20
	c.S3.Concurrency = 2
	return c
}

// FakeGCS starts fake-gcs-server in-process on a loopback port with an
// empty bucket and returns the Config of a store on it. Its Root is
// gs://statjob-test/root and GCS.Endpoint the server; change Root to open
// other stores on the same server.
func FakeGCS(t testing.TB) storage.Config {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1", Writer: discard{},
	})
	if err != nil {
		t.Fatalf("start fake-gcs-server: %v", err)
	}
	t.Cleanup(srv.Stop)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: Bucket})
	c := testTuning(storage.Config{Root: "gs://" + Bucket + "/root"})
	c.GCS.Endpoint = srv.URL()
	return c
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// GoFakeS3 starts gofakes3 (in memory) in-process on a loopback port with
// an empty bucket and returns the Config of a store on it (Root
// s3://statjob-test/root, path-style, the server as S3.Endpoint).
func GoFakeS3(t testing.TB) storage.Config {
	t.Helper()
	be := s3mem.New()
	if err := be.CreateBucket(Bucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(be, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(srv.Close)
	return s3Config(srv.URL)
}

func s3Config(endpoint string) storage.Config {
	setS3TestEnv()
	c := testTuning(storage.Config{Root: "s3://" + Bucket + "/root"})
	c.S3.Endpoint = endpoint
	c.S3.PathStyle = true
	c.S3.Region = "us-east-1"
	return c
}

// Test credentials for the S3 emulators. They reach the SDK the way real
// ones do, through the default chain's environment variables.
const (
	testAccessKey = "statjobtestkey"
	testSecretKey = "statjobtestsecret0123456789"
)

var s3EnvOnce sync.Once

// setS3TestEnv points the AWS default credential chain of this test
// process at the emulators' keys and away from any real profile, role or
// instance metadata.
func setS3TestEnv() {
	s3EnvOnce.Do(func() {
		os.Setenv("AWS_ACCESS_KEY_ID", testAccessKey)
		os.Setenv("AWS_SECRET_ACCESS_KEY", testSecretKey)
		os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
		for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"} {
			os.Unsetenv(k)
		}
		os.Setenv("AWS_CONFIG_FILE", os.DevNull)
		os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	})
}
