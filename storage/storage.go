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
// escape the root ("..", absolute paths) are rejected.
package storage

import (
	"context"
	"errors"
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
