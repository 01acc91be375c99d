// Package storage is statjob's one view of object storage: a Store over
// gs://bucket/prefix, s3://bucket/prefix and local folders (plain paths or
// file:// URIs).
//
// Every stage output, manifest, lease and cached teacher reply goes through a
// Store. The contract every backend keeps (and the conformance suite in this
// package proves):
//
//   - Put writes a whole object from a stream; readers never see it
//     half-written. Its sha256 is computed while streaming and returned.
//   - Put with IfAbsent is create-if-absent: exactly one of N racing writers
//     wins, the others get ErrExists.
//   - Put with IfGeneration is compare-and-swap: it succeeds only while the
//     object's current generation equals the given one, else ErrStale.
//   - A store that cannot honour conditional writes says so (Conditional
//     returns false) and refuses them with ErrUnsupported rather than
//     silently overwriting.
//
// Keys are slash-separated, relative to the store's root; keys that would
// escape the root ("..", absolute paths) are rejected (CheckKey), and so is
// the reserved first segment ".statjob".
//
// # Opening
//
//	s, err := storage.Open(ctx, "gs://bucket/statjob")      // or s3://…, file:///…, ./dir
//	s, err := storage.Config{Root: "s3://b/p", S3: storage.S3Config{
//		Endpoint: "https://minio.example:9000", PathStyle: true,
//		ChecksumsWhenRequired: true}}.Open(ctx)
//
// Credentials come from each ecosystem's own chain (Application Default
// Credentials; the default AWS chain), never from Config, and never appear in
// errors. A missing bucket or permission fails Open, naming the URI.
//
// # Backends and libraries
//
// GCS uses cloud.google.com/go/storage over the JSON API: generations are the
// CAS tokens (ifGenerationMatch, ifGenerationMatch=0 for create-if-absent),
// uploads are resumable in GCS.ChunkSize pieces (the memory one upload holds)
// with CRC32C checked by the service, reads verify CRC32C.
//
// S3 uses aws-sdk-go-v2: If-None-Match: * and If-Match: <ETag> on PutObject
// and CompleteMultipartUpload. Open probes with a throw-away object under
// .statjob/ whether the store honours them; where it does not (several
// S3-compatible stores accept and ignore them), Conditional is false and
// conditional writes fail with ErrUnsupported instead of overwriting.
// Multipart uploads go through feature/s3/manager: it is marked deprecated in
// favour of feature/s3/transfermanager, but it is the stable, long-used code
// path (a v1 module, still maintained), it copies If-None-Match / If-Match
// onto CompleteMultipartUpload, and memory is bounded by PartSize ×
// Concurrency; transfermanager is pre-1.0 with an API still moving, which a
// job that must resume for months should not build on. Swapping is local to
// s3.go.
//
// gocloud.dev/blob would give the three backends behind one URL API, and its
// driver split is the model for this package; it was not used because what
// statjob needs most is not portable there: compare-and-swap on a generation
// or ETag (only reachable through per-cloud As hooks, i.e. writing the three
// backends' conditional code anyway), probing S3-compatible stores for
// conditional support, and a local backend whose create-if-absent and CAS are
// safe between processes (fileblob has no compare-and-swap). It would be a
// forwarding layer over the same two SDKs.
//
// # Integrity
//
// Put computes the sha256 while streaming and returns it. Objects up to one
// chunk/part are sent in one request with the sha256 as metadata (and on S3
// as x-amz-checksum-sha256, checked by the service; with
// ChecksumsWhenRequired, Content-MD5 instead); larger ones record it after the upload on GCS
// (a metadata update of that generation), while on S3 only Put's return has
// it (metadata cannot change after CreateMultipartUpload). List on S3 carries
// no metadata: Attrs.SHA256 is empty there, Stat has it.
//
// # Retries
//
// Both SDKs retry 408/429/5xx, connection resets and stalls (no response
// headers within StallTimeout) with jittered exponential backoff (the
// first retry waits up to 100ms, S3 throttling up to 1s, doubling up to
// MaxBackoff), up to MaxAttempts tries per request; then the error, naming
// the URI, reaches the caller. 403, 404 and a missing bucket are not
// retried. A download whose body goes silent for StallTimeout is resumed
// from where it stopped (GCS by its client, S3 by a ranged GET pinned to
// the ETag).
//
// Every write is retried, conditional ones included (the GCS client's own
// default retries a write only when it carries a precondition). A store
// may apply a write and lose its answer (a 503 or a reset after the
// commit); the retry of a conditional write then fails its precondition on
// the object its own first try wrote, and a retried S3
// CompleteMultipartUpload finds its upload gone. Put notes when any of its
// requests got no clear answer, and then settles such a failure by reading
// the object back: if it holds exactly the bytes this Put sent (its
// sha256, recorded on the object or hashed from a read), the Put succeeded
// and returns the object's new generation; otherwise ErrExists / ErrStale
// stand. A conditional write never overwrites another writer's object; two
// writers of byte-identical content after a lost answer may both be told
// they succeeded. If the read-back itself fails, Put returns an error that
// is neither sentinel: the outcome is unknown, and callers retry later.
// Resumable GCS uploads are checked after the fact: an object whose size
// or CRC32C differs from what was sent is removed and Put fails.
//
// # Local folders
//
// Objects are plain files under the root; .statjob/ holds metadata (sha256
// and generation per object), lock files and temp files. A write goes to a
// temp file, is fsynced and renamed (create-if-absent: linked, which fails if
// the name exists) under an flock of the key's stripe, so create-if-absent
// and CAS are atomic between processes on one machine (and on NFS where flock
// is). Unlike the clouds, "a" and "a/b" cannot both exist.
//
// Tests of other packages get every backend, emulators included, from
// storage/storagetest.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Sentinel errors callers branch on. Backends wrap them with the URI.
var (
	// ErrNotExist: the object does not exist.
	ErrNotExist = errors.New("object does not exist")
	// ErrExists: a create-if-absent found the object already there.
	ErrExists = errors.New("object already exists")
	// ErrStale: a compare-and-swap found another generation than expected.
	ErrStale = errors.New("object generation changed")
	// ErrUnsupported: the store cannot do a conditional write safely.
	ErrUnsupported = errors.New("conditional writes not supported by this store")
	// ErrBadKey: a key that is empty, absolute, or escapes the root.
	ErrBadKey = errors.New("invalid object key")
)

// Attrs describes one stored object.
type Attrs struct {
	Key        string    // relative to the store's root
	Size       int64     // bytes
	SHA256     string    // hex; empty when the object was not written by a Store
	Generation string    // GCS generation, S3 ETag, local counter: the CAS token
	Updated    time.Time // last modification
}

// PutOptions makes a Put conditional. The zero value overwrites.
type PutOptions struct {
	// IfAbsent: create only if no object exists under the key (ErrExists otherwise).
	IfAbsent bool
	// IfGeneration: replace only if the object's generation is this one (ErrStale otherwise).
	IfGeneration string
	// ContentType is recorded where the backend keeps it.
	ContentType string
}

// Getter is the reading side of a Store, all that ReadAll needs.
type Getter interface {
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}

// ReadAll reads the whole object at key. An absent object's error wraps
// ErrNotExist; every error names the object.
func ReadAll(ctx context.Context, src Getter, key string) ([]byte, error) {
	rc, err := src.Get(ctx, key)
	if err != nil {
		return nil, err // the store's errors name the object
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return b, nil
}

// Store is the small interface every backend implements.
type Store interface {
	// Put writes the whole of r under key. The object becomes visible only
	// when complete; on error or cancelled ctx nothing is visible.
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Attrs, error)
	// Get opens the object for reading. ErrNotExist when absent.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// GetRange reads length bytes from offset (length < 0: to the end).
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Stat returns the object's attributes. ErrNotExist when absent.
	Stat(ctx context.Context, key string) (Attrs, error)
	// List calls fn for every object whose key starts with prefix, in
	// lexical key order, across all pages. fn returning an error stops it.
	List(ctx context.Context, prefix string, fn func(Attrs) error) error
	// Delete removes the object. Deleting an absent object is not an error.
	Delete(ctx context.Context, key string) error
	// Copy copies src to dst, server-side where the backend allows.
	Copy(ctx context.Context, dst, src string) (Attrs, error)
	// Conditional reports whether IfAbsent / IfGeneration are honoured.
	Conditional() bool
	// URI names key in this store (gs://b/p/key, s3://b/p/key, file:///p/key).
	URI(key string) string
	// Close releases clients.
	Close() error
}
