package storage

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Config selects and tunes a Store. The zero value of every field but Root
// is a working default (see DefaultConfig); no field holds a secret:
// credentials come from each cloud's own chain (Application Default
// Credentials for GCS; the default AWS chain — environment, shared config
// and credentials files, SSO, IMDS / ECS roles — for S3).
type Config struct {
	// Root is where objects live: gs://bucket/prefix, s3://bucket/prefix,
	// file:///abs/path, or a plain local path (relative to the working dir).
	Root string `yaml:"root"`
	// MaxAttempts bounds the tries of one request on transient errors
	// (408, 429, 5xx, connection resets, stalls), the first included.
	// 0 means 10: with the default backoff a request gives up after about
	// half a minute of a failing store (at most about a minute; S3
	// throttling, which starts at 1s, about two).
	MaxAttempts int `yaml:"max_attempts"`
	// MaxBackoff caps the wait between tries: the first retry waits a
	// random time up to 100ms (S3 throttling: up to 1s), each further one
	// up to twice as long, capped here. 0 means 30s.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// StallTimeout fails (and retries) a request whose response headers do
	// not arrive within it. 0 means 2m; it must exceed the slowest single
	// chunk or part upload's server-side commit.
	StallTimeout time.Duration `yaml:"stall_timeout"`
	// GCS tunes gs:// roots.
	GCS GCSConfig `yaml:"gcs"`
	// S3 tunes s3:// roots, including S3-compatible stores.
	S3 S3Config `yaml:"s3"`
}

// GCSConfig tunes gs:// roots.
type GCSConfig struct {
	// Endpoint overrides the JSON API endpoint (an emulator, e.g.
	// http://127.0.0.1:4443). Empty: Google's, or STORAGE_EMULATOR_HOST.
	Endpoint string `yaml:"endpoint"`
	// ChunkSize is the resumable upload chunk, the memory one upload holds.
	// A multiple of 256 KiB; 0 means 16 MiB.
	ChunkSize int `yaml:"chunk_size"`
	// UserProject bills requester-pays buckets to this project.
	UserProject string `yaml:"user_project"`
}

// S3Config tunes s3:// roots.
type S3Config struct {
	// Endpoint is the URL of an S3-compatible store (R2, Ceph RGW, MinIO,
	// versitygw). Empty: AWS, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL.
	Endpoint string `yaml:"endpoint"`
	// Region; empty: AWS_REGION or the shared config, else us-east-1.
	Region string `yaml:"region"`
	// Profile selects a shared config profile; empty: AWS_PROFILE or default.
	Profile string `yaml:"profile"`
	// PathStyle addresses buckets as endpoint/bucket/key rather than
	// bucket.endpoint/key (most self-hosted stores need it).
	PathStyle bool `yaml:"path_style"`
	// ChecksumsWhenRequired sends and validates the SDK's flexible
	// checksums only where an operation requires them; several
	// S3-compatible stores reject the default CRC32 trailers. Objects up to
	// one part then go up with Content-MD5, which every S3 store checks;
	// multipart parts carry no checksum header of their own.
	ChecksumsWhenRequired bool `yaml:"checksums_when_required"`
	// PartSize of multipart uploads; 0 means 16 MiB, at least 5 MiB.
	// Objects up to one part go up in a single PUT.
	PartSize int64 `yaml:"part_size"`
	// Concurrency is the number of parts in flight per upload; 0 means 4.
	// An upload holds about PartSize × (Concurrency+1) bytes.
	Concurrency int `yaml:"concurrency"`
}

// DefaultConfig returns the defaults for root, as Open uses them.
func DefaultConfig(root string) Config {
	return Config{
		Root:         root,
		MaxAttempts:  10,
		MaxBackoff:   30 * time.Second,
		StallTimeout: 2 * time.Minute,
		GCS:          GCSConfig{ChunkSize: 16 << 20},
		S3:           S3Config{PartSize: 16 << 20, Concurrency: 4},
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig(c.Root)
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = d.MaxBackoff
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = d.StallTimeout
	}
	if c.GCS.ChunkSize == 0 {
		c.GCS.ChunkSize = d.GCS.ChunkSize
	}
	if c.S3.PartSize == 0 {
		c.S3.PartSize = d.S3.PartSize
	}
	if c.S3.Concurrency == 0 {
		c.S3.Concurrency = d.S3.Concurrency
	}
	return c
}

// location is a parsed Root.
type location struct {
	scheme string // "gs", "s3" or "file"
	bucket string // cloud only
	prefix string // cloud: "" or "a/b/" (with trailing slash); file: absolute path
}

func parseRoot(root string) (location, error) {
	if root == "" {
		return location{}, fmt.Errorf("root: empty")
	}
	scheme, rest, ok := strings.Cut(root, "://")
	if !ok {
		if strings.Contains(root, ":") && !strings.ContainsAny(root, "/.") {
			return location{}, fmt.Errorf("root %q: not a URI or path", root)
		}
		abs, err := filepath.Abs(root)
		if err != nil {
			return location{}, fmt.Errorf("root %q: %w", root, err)
		}
		return location{scheme: "file", prefix: abs}, nil
	}
	switch scheme {
	case "file":
		u, err := url.Parse(root)
		if err != nil {
			return location{}, fmt.Errorf("root %q: %w", root, err)
		}
		if u.Host != "" && u.Host != "localhost" {
			return location{}, fmt.Errorf("root %q: file URI with a host; use file:///abs/path", root)
		}
		if u.Path == "" || !strings.HasPrefix(u.Path, "/") {
			return location{}, fmt.Errorf("root %q: file URI needs an absolute path", root)
		}
		return location{scheme: "file", prefix: filepath.Clean(u.Path)}, nil
	case "gs", "s3":
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return location{}, fmt.Errorf("root %q: no bucket", root)
		}
		if strings.ContainsAny(bucket, "?#@: ") {
			return location{}, fmt.Errorf("root %q: bad bucket name %q", root, bucket)
		}
		prefix = strings.Trim(prefix, "/")
		if prefix != "" {
			if err := CheckKey(prefix); err != nil {
				return location{}, fmt.Errorf("root %q: prefix: %w", root, err)
			}
			prefix += "/"
		}
		return location{scheme: scheme, bucket: bucket, prefix: prefix}, nil
	default:
		return location{}, fmt.Errorf("root %q: unknown scheme %q (want gs://, s3://, file:// or a path)", root, scheme)
	}
}

// Validate reports the first bad field by its yaml name.
func (c Config) Validate() error {
	if _, err := parseRoot(c.Root); err != nil {
		return fmt.Errorf("storage.%w", err)
	}
	switch {
	case c.MaxAttempts < 0:
		return fmt.Errorf("storage.max_attempts: %d is negative", c.MaxAttempts)
	case c.MaxBackoff < 0:
		return fmt.Errorf("storage.max_backoff: %v is negative", c.MaxBackoff)
	case c.StallTimeout < 0:
		return fmt.Errorf("storage.stall_timeout: %v is negative", c.StallTimeout)
	case c.GCS.ChunkSize < 0 || c.GCS.ChunkSize%(256<<10) != 0:
		return fmt.Errorf("storage.gcs.chunk_size: %d is not a positive multiple of 256 KiB", c.GCS.ChunkSize)
	case c.S3.PartSize != 0 && c.S3.PartSize < 5<<20:
		return fmt.Errorf("storage.s3.part_size: %d is under the S3 minimum of 5 MiB", c.S3.PartSize)
	case c.S3.Concurrency < 0:
		return fmt.Errorf("storage.s3.concurrency: %d is negative", c.S3.Concurrency)
	}
	for field, ep := range map[string]string{"storage.gcs.endpoint": c.GCS.Endpoint, "storage.s3.endpoint": c.S3.Endpoint} {
		if ep == "" {
			continue
		}
		u, err := url.Parse(ep)
		switch {
		case err != nil:
			return fmt.Errorf("%s: not a URL", field) // the text may hold a secret: not echoed
		case u.User != nil:
			return fmt.Errorf("%s: must not hold credentials", field)
		case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return fmt.Errorf("%s: %q is not an http(s) URL", field, ep)
		}
	}
	return nil
}

// Open opens the Store named by uri with default settings.
func Open(ctx context.Context, uri string) (Store, error) {
	return Config{Root: uri}.Open(ctx)
}

// Open validates c and opens its Store.
func (c Config) Open(ctx context.Context) (Store, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	loc, _ := parseRoot(c.Root)
	switch loc.scheme {
	case "gs":
		return openGCS(ctx, c, loc)
	case "s3":
		return openS3(ctx, c, loc)
	default:
		return openLocal(loc.prefix)
	}
}
