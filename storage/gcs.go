package storage

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
)

// gcsStore is the Store over gs://bucket/prefix: the official client on
// the JSON API (reads included), generations as CAS tokens, resumable
// uploads in ChunkSize pieces with CRC32C checked by the service.
type gcsStore struct {
	client *storage.Client
	bucket *storage.BucketHandle
	loc    location
	chunk  int
}

const shaKey = "sha256" // user metadata key holding the object's sha256

func openGCS(ctx context.Context, c Config, loc location) (Store, error) {
	uri := "gs://" + loc.bucket + "/" + loc.prefix
	base := httpTransport(c)
	opts := []option.ClientOption{storage.WithJSONReads()}
	endpoint := c.GCS.Endpoint
	if endpoint == "" {
		if h := os.Getenv("STORAGE_EMULATOR_HOST"); h != "" {
			endpoint = h
			if !strings.Contains(h, "://") {
				endpoint = "http://" + h
			}
		}
	}
	if endpoint != "" {
		opts = append(opts, option.WithEndpoint(strings.TrimSuffix(endpoint, "/")+"/storage/v1/"),
			option.WithoutAuthentication(), option.WithHTTPClient(&http.Client{Transport: base}))
	} else {
		// Application Default Credentials over our own transport.
		ts, err := google.DefaultTokenSource(ctx, storage.ScopeReadWrite)
		if err != nil {
			return nil, fmt.Errorf("open %s: application default credentials: %w", uri, err)
		}
		opts = append(opts, option.WithHTTPClient(&http.Client{Transport: &oauth2.Transport{Source: ts, Base: base}}))
	}
	client, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", uri, err)
	}
	// The client's default retries a write only when it carries a
	// precondition. Every write here is safe to repeat: an unconditional
	// one overwrites with the same bytes, and a conditional one whose first
	// try was applied but whose answer was lost fails its precondition on
	// the retry, which Put settles by reading back (settle).
	client.SetRetry(
		storage.WithPolicy(storage.RetryAlways),
		storage.WithMaxAttempts(c.MaxAttempts),
		storage.WithBackoff(gax.Backoff{Initial: min(firstBackoff, c.MaxBackoff), Max: c.MaxBackoff, Multiplier: 2}),
	)
	g := &gcsStore{client: client, bucket: client.Bucket(loc.bucket), loc: loc, chunk: c.GCS.ChunkSize}
	if c.GCS.UserProject != "" {
		g.bucket = g.bucket.UserProject(c.GCS.UserProject)
	}
	// Fail now on a missing bucket or missing permission, not at the first
	// write hours into a job. Listing needs only objects.list, which a job
	// needs anyway (bucket metadata needs more).
	q := &storage.Query{Prefix: loc.prefix}
	q.SetAttrSelection([]string{"Name"})
	it := g.bucket.Objects(ctx, q)
	it.PageInfo().MaxSize = 1
	if _, err := it.Next(); err != nil && err != iterator.Done {
		client.Close()
		return nil, g.wrap("open", "", err)
	}
	return g, nil
}

func (g *gcsStore) URI(key string) string { return "gs://" + g.loc.bucket + "/" + g.loc.prefix + key }
func (g *gcsStore) Conditional() bool     { return true }
func (g *gcsStore) Close() error          { return g.client.Close() }

func (g *gcsStore) obj(key string) *storage.ObjectHandle { return g.bucket.Object(g.loc.prefix + key) }

// wrap names the URI and maps the client's errors onto the sentinels.
func (g *gcsStore) wrap(op, key string, err error) error {
	var gerr *googleapi.Error
	switch {
	case errors.Is(err, storage.ErrObjectNotExist):
		err = ErrNotExist
	case errors.Is(err, storage.ErrBucketNotExist):
		err = fmt.Errorf("bucket %s does not exist", g.loc.bucket)
	case errors.As(err, &gerr) && gerr.Code == http.StatusForbidden:
		err = fmt.Errorf("permission denied (check the credentials' roles on the bucket): %w", err)
	}
	return fmt.Errorf("%s %s: %w", op, g.URI(key), err)
}

func (g *gcsStore) attrs(oa *storage.ObjectAttrs) Attrs {
	return Attrs{
		Key:        strings.TrimPrefix(oa.Name, g.loc.prefix),
		Size:       oa.Size,
		SHA256:     oa.Metadata[shaKey],
		Generation: strconv.FormatInt(oa.Generation, 10),
		Updated:    oa.Updated,
	}
}

func (g *gcsStore) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Attrs, error) {
	if err := CheckKey(key); err != nil {
		return Attrs{}, err
	}
	o := g.obj(key)
	switch {
	case opts.IfAbsent && opts.IfGeneration != "":
		return Attrs{}, fmt.Errorf("put %s: IfAbsent and IfGeneration together", g.URI(key))
	case opts.IfAbsent:
		o = o.If(storage.Conditions{DoesNotExist: true})
	case opts.IfGeneration != "":
		gen, err := strconv.ParseInt(opts.IfGeneration, 10, 64)
		if err != nil || gen <= 0 {
			return Attrs{}, g.wrap("put", key, ErrStale) // never a GCS generation: cannot match
		}
		o = o.If(storage.Conditions{GenerationMatch: gen})
	}
	hd, err := readHead(ctx, r, g.chunk)
	if err != nil {
		return Attrs{}, g.wrap("put", key, err)
	}
	// Cancelling the writer's context is how an unfinished upload is
	// abandoned: it is never finalized, so nothing becomes visible.
	dctx, doubt := withDoubt(ctx)
	wctx, cancel := context.WithCancel(dctx)
	defer cancel()
	w := o.NewWriter(wctx)
	w.ChunkSize = g.chunk
	w.ContentType = opts.ContentType
	var (
		sha  string
		size int64
		crc  = crc32.New(crc32.MakeTable(crc32.Castagnoli))
	)
	if hd.small {
		// The writer buffers ChunkSize bytes for its retries: for a small
		// object (a manifest, a cached teacher reply) a buffer just large
		// enough keeps memory at the object's size instead of one full
		// chunk per upload in flight. 0 would disable the retries.
		w.ChunkSize = smallChunk(len(hd.buf), g.chunk)
		sha, size = hd.sum(), int64(len(hd.buf))
		w.Metadata = map[string]string{shaKey: sha}
		w.CRC32C = crc32.Checksum(hd.buf, crc32.MakeTable(crc32.Castagnoli))
		w.SendCRC32C = true
		_, err = w.Write(hd.buf)
	} else {
		size, err = io.Copy(io.MultiWriter(w, crc), hd.rest)
		sha = hd.sum()
	}
	if err != nil {
		cancel()
		w.Close()
		return Attrs{}, g.wrap("put", key, err)
	}
	if err := w.Close(); err != nil {
		var gerr *googleapi.Error
		failure := err
		switch {
		case errors.As(err, &gerr) && gerr.Code == http.StatusPreconditionFailed && opts.IfAbsent:
			failure = ErrExists
		case errors.As(err, &gerr) && gerr.Code == http.StatusPreconditionFailed:
			failure = ErrStale
		case errors.As(err, &gerr) && gerr.Code == http.StatusNotFound && !hd.small:
			// An upload session already finalized by a try whose answer
			// was lost (GCS itself answers such a retry with the object).
		default:
			return Attrs{}, g.wrap("put", key, err)
		}
		a, err := settle(ctx, g, key, sha, size, doubt.Load(), failure)
		if err != nil {
			return Attrs{}, g.wrap("put", key, err)
		}
		return a, nil
	}
	a := g.attrs(w.Attrs())
	if !hd.small {
		// A resumable upload is retried chunk by chunk; what the service
		// assembled must be what was sent.
		if got := w.Attrs(); got.Size != size || got.CRC32C != crc.Sum32() {
			g.obj(key).If(storage.Conditions{GenerationMatch: got.Generation}).Delete(context.WithoutCancel(ctx))
			return Attrs{}, g.wrap("put", key, fmt.Errorf("the service assembled %d bytes with CRC32C %08x from an upload of %d bytes with CRC32C %08x: removed",
				got.Size, got.CRC32C, size, crc.Sum32()))
		}
		// The sha256 of a streamed object is known only now. Record it on
		// this generation (metadata updates keep the generation); if
		// another writer replaced the object meanwhile, there is nothing
		// to record. Either way the object is written and Put succeeded.
		g.obj(key).If(storage.Conditions{GenerationMatch: w.Attrs().Generation}).
			Update(ctx, storage.ObjectAttrsToUpdate{Metadata: map[string]string{shaKey: sha}})
	}
	a.SHA256 = sha
	return a, nil
}

func (g *gcsStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return g.GetRange(ctx, key, 0, -1)
}

func (g *gcsStore) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("read %s: negative offset %d", g.URI(key), offset)
	}
	r, err := g.obj(key).NewRangeReader(ctx, offset, length)
	if err != nil {
		return nil, g.wrap("read", key, err)
	}
	return r, nil
}

func (g *gcsStore) Stat(ctx context.Context, key string) (Attrs, error) {
	if err := CheckKey(key); err != nil {
		return Attrs{}, err
	}
	oa, err := g.obj(key).Attrs(ctx)
	if err != nil {
		return Attrs{}, g.wrap("stat", key, err)
	}
	return g.attrs(oa), nil
}

func (g *gcsStore) List(ctx context.Context, prefix string, fn func(Attrs) error) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	q := &storage.Query{Prefix: g.loc.prefix + prefix}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Generation", "Updated", "Metadata"}); err != nil {
		return err
	}
	it := g.bucket.Objects(ctx, q)
	for {
		oa, err := it.Next()
		if err == iterator.Done {
			return nil
		}
		if err != nil {
			return g.wrap("list", prefix, err)
		}
		a := g.attrs(oa)
		if strings.HasSuffix(a.Key, "/") || CheckKey(a.Key) != nil {
			continue // folder placeholders, reserved keys
		}
		if err := fn(a); err != nil {
			return err
		}
	}
}

func (g *gcsStore) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := g.obj(key).Delete(ctx); err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
		return g.wrap("delete", key, err)
	}
	return nil
}

// Copy rewrites server-side; metadata, sha256 included, comes along.
func (g *gcsStore) Copy(ctx context.Context, dst, src string) (Attrs, error) {
	if err := CheckKey(dst); err != nil {
		return Attrs{}, err
	}
	if err := CheckKey(src); err != nil {
		return Attrs{}, err
	}
	oa, err := g.obj(dst).CopierFrom(g.obj(src)).Run(ctx)
	if err != nil {
		return Attrs{}, g.wrap("copy "+g.URI(src)+" to", dst, err)
	}
	return g.attrs(oa), nil
}

// smallChunk is the writer chunk size for an object of n bytes that fits in
// one chunk: n rounded up to the service's 256 KiB granularity, at most chunk.
func smallChunk(n, chunk int) int {
	const unit = googleapi.MinUploadChunkSize
	return min(chunk, max(unit, (n+unit)/unit*unit))
}
