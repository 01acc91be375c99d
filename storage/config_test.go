package storage_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

func TestConfigYAML(t *testing.T) {
	var c storage.Config
	src := `
root: s3://bucket/statjob
max_attempts: 8
stall_timeout: 45s
s3:
  endpoint: http://127.0.0.1:7070
  region: eu-west-1
  path_style: true
  checksums_when_required: true
  part_size: 67108864
gcs:
  chunk_size: 8388608
`
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Root != "s3://bucket/statjob" || c.MaxAttempts != 8 || c.StallTimeout.Seconds() != 45 ||
		!c.S3.PathStyle || !c.S3.ChecksumsWhenRequired || c.S3.Region != "eu-west-1" || c.S3.PartSize != 64<<20 || c.GCS.ChunkSize != 8<<20 {
		t.Errorf("decoded %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg       storage.Config
		wantField string
	}{
		{storage.Config{}, "storage.root"},
		{storage.Config{Root: "gs://"}, "storage.root"},
		{storage.Config{Root: "gs:///prefix"}, "storage.root"},
		{storage.Config{Root: "ftp://host/x"}, "storage.root"},
		{storage.Config{Root: "s3://b/a/../b"}, "storage.root"},
		{storage.Config{Root: "file://host/x"}, "storage.root"},
		{storage.Config{Root: "s3://b", MaxAttempts: -1}, "storage.max_attempts"},
		{storage.Config{Root: "gs://b", GCS: storage.GCSConfig{ChunkSize: 1000}}, "storage.gcs.chunk_size"},
		{storage.Config{Root: "s3://b", S3: storage.S3Config{PartSize: 1 << 20}}, "storage.s3.part_size"},
		{storage.Config{Root: "s3://b", S3: storage.S3Config{Endpoint: "localhost:9000"}}, "storage.s3.endpoint"},
		{storage.Config{Root: "s3://b", S3: storage.S3Config{Endpoint: "http://AKIAKEY:topsecret@host:9000"}}, "storage.s3.endpoint"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), c.wantField) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", c.cfg, err, c.wantField)
		}
		if err != nil && strings.Contains(err.Error(), "topsecret") {
			t.Errorf("error leaks a secret: %v", err)
		}
	}
	for _, root := range []string{"gs://b", "gs://b/p/q/", "s3://b/p", "file:///tmp/x", "relative/dir", "/abs/dir"} {
		if err := (storage.Config{Root: root}).Validate(); err != nil {
			t.Errorf("Validate(%q) = %v", root, err)
		}
	}
}

func TestOpenLocalForms(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	a, err := storage.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(ctx, "x/y", strings.NewReader("hi"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := storage.Open(ctx, "file://"+filepath.ToSlash(dir))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.URI("x/y"); got != "file://"+filepath.ToSlash(dir)+"/x/y" {
		t.Errorf("URI = %q", got)
	}
	if _, err := b.Stat(ctx, "x/y"); err != nil {
		t.Errorf("file:// store does not see the plain path store's object: %v", err)
	}
	if _, err := a.Stat(ctx, ".statjob/meta/x/y"); !errors.Is(err, storage.ErrBadKey) {
		t.Errorf("reserved key: %v, want ErrBadKey", err)
	}
}

// A missing bucket fails at open, at once (one request: 404 is not
// retried), naming the URI; so does a missing object.
func TestOpenMissingBucket(t *testing.T) {
	for _, c := range []struct {
		start func(testing.TB) storage.Config
		root  string
	}{
		{storagetest.FakeGCS, "gs://no-such-bucket/x"},
		{storagetest.GoFakeS3, "s3://no-such-bucket/x"},
	} {
		cfg := c.start(t)
		good := cfg.Root
		ep := &cfg.S3.Endpoint
		if strings.HasPrefix(c.root, "gs://") {
			ep = &cfg.GCS.Endpoint
		}
		proxy, counts := storagetest.FaultProxy(t, *ep, storagetest.Faults{})
		*ep = proxy
		cfg.Root = c.root
		if _, err := cfg.Open(context.Background()); err == nil || !strings.Contains(err.Error(), c.root) {
			t.Errorf("open of a missing bucket: %v, want an error naming %s", err, c.root)
		}
		if n := counts().Requests; n != 1 {
			t.Errorf("open of %s: %d requests, want 1 (no retries)", c.root, n)
		}
		cfg.Root = good
		s := storagetest.Open(t, cfg)
		before := counts().Requests
		if _, err := s.Stat(context.Background(), "missing"); !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("Stat of a missing object: %v", err)
		}
		if n := counts().Requests - before; n != 1 {
			t.Errorf("Stat of a missing object on %s: %d requests, want 1 (no retries)", good, n)
		}
	}
}

// Wrong credentials fail at open, at once (403 is not retried), with an
// error that names the URI and holds no secret.
func TestS3BadCredentials(t *testing.T) {
	c, ok := storagetest.Versitygw(t)
	if !ok {
		t.Skip("versitygw not installed")
	}
	const secret = "not-the-secret-0123456789"
	good := os.Getenv("AWS_SECRET_ACCESS_KEY")
	os.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	defer os.Setenv("AWS_SECRET_ACCESS_KEY", good)
	proxy, counts := storagetest.FaultProxy(t, c.S3.Endpoint, storagetest.Faults{})
	c.S3.Endpoint = proxy
	_, err := c.Open(context.Background())
	if err == nil {
		t.Fatal("open with a wrong secret key succeeded")
	}
	if n := counts().Requests; n != 1 {
		t.Errorf("open with a wrong secret key: %d requests, want 1 (403 is not retried)", n)
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "s3://"+storagetest.Bucket+"/root") || strings.Contains(err.Error(), secret) {
		t.Errorf("error %q: want the URI named and no secret", err)
	}
}

// With no endpoint in the config, a gs:// root goes to STORAGE_EMULATOR_HOST
// (host:port, as gcloud's emulators print it) when it is set.
func TestGCSEmulatorHostEnv(t *testing.T) {
	c := storagetest.FakeGCS(t)
	t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(c.GCS.Endpoint, "http://"))
	c.GCS.Endpoint = ""
	s := storagetest.Open(t, c)
	if _, err := s.Put(context.Background(), "k", strings.NewReader("via env"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := string(storagetest.ReadAll(t, s, "k")); got != "via env" {
		t.Errorf("read back %q", got)
	}
}
