package storage

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// s3Store is the Store over s3://bucket/prefix, on AWS or any
// S3-compatible endpoint. ETags are the CAS tokens (If-Match); If-None-Match:
// * is create-if-absent. Whether the store honours both is probed at open.
type s3Store struct {
	client   *s3.Client
	uploader *manager.Uploader
	loc      location
	partSize int64
	attempts int
	checksum bool // send our sha256 as x-amz-checksum-sha256 on single PUTs
	// conditional: PUT honours If-None-Match / If-Match. multipartCond:
	// so does CompleteMultipartUpload (conditional objects over one part).
	conditional, multipartCond bool
}

// maxCopy is the largest object CopyObject copies in one request.
const maxCopy = 5 << 30

func openS3(ctx context.Context, c Config, loc location) (Store, error) {
	uri := "s3://" + loc.bucket + "/" + loc.prefix
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.ResponseHeaderTimeout = c.StallTimeout
			t.MaxIdleConnsPerHost = 64
		})),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = c.MaxAttempts
				o.MaxBackoff = c.MaxBackoff
				o.BaseDelay = min(firstBackoff, c.MaxBackoff) // throttles: 1s, capped by MaxBackoff
				// Retry every transient error of a long job, not only
				// while a client-side retry quota lasts.
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if c.S3.Region != "" {
		opts = append(opts, config.WithRegion(c.S3.Region))
	}
	if c.S3.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(c.S3.Profile))
	}
	if c.S3.ChecksumsWhenRequired {
		opts = append(opts,
			config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
			config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("open %s: aws config: %w", uri, err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	cfg.HTTPClient = stallClient{cfg.HTTPClient, c.StallTimeout}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.S3.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.S3.Endpoint)
		}
		o.UsePathStyle = c.S3.PathStyle
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	s := &s3Store{
		client: client,
		uploader: manager.NewUploader(client, func(u *manager.Uploader) {
			u.PartSize = c.S3.PartSize
			u.Concurrency = c.S3.Concurrency
		}),
		loc:      loc,
		partSize: c.S3.PartSize,
		attempts: c.MaxAttempts,
		checksum: !c.S3.ChecksumsWhenRequired,
	}
	if err := s.probe(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// probe finds out whether the store honours conditional writes, with a
// throw-away object under Reserved: a second If-None-Match: * PUT and an
// If-Match PUT with a wrong ETag must both be refused, and so must a
// conditional CompleteMultipartUpload. A store that takes them silently
// would overwrite, so conditional writes are then refused (ErrUnsupported).
// The probe also fails the open at once on a missing bucket or permission.
func (s *s3Store) probe(ctx context.Context) error {
	key := Reserved + "/probe-" + newToken()
	full := aws.String(s.loc.prefix + key)
	bucket := aws.String(s.loc.bucket)
	putIf := func(noneMatch, match string) error {
		in := &s3.PutObjectInput{Bucket: bucket, Key: full, Body: strings.NewReader("probe")}
		if noneMatch != "" {
			in.IfNoneMatch = aws.String(noneMatch)
		}
		if match != "" {
			in.IfMatch = aws.String(match)
		}
		_, err := s.client.PutObject(ctx, in)
		return err
	}
	// The key is fresh: a 412 here means a try whose answer was lost
	// created it.
	if err := putIf("*", ""); err != nil && !isPrecondition(err) {
		if isCode(err, "NotImplemented") {
			return nil // conditional PUT refused outright: unsupported
		}
		return s.wrap("open", "", err)
	}
	defer s.client.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: bucket, Key: full})
	if err := putIf("*", ""); !isPrecondition(err) {
		return nil
	}
	if err := putIf("", `"00000000000000000000000000000000"`); !isPrecondition(err) {
		return nil
	}
	s.conditional = true
	up, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: bucket, Key: full})
	if err != nil {
		return s.wrap("open", "", err)
	}
	part, err := s.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: bucket, Key: full, UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: strings.NewReader("probe")})
	if err == nil {
		_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: bucket, Key: full,
			UploadId: up.UploadId, IfNoneMatch: aws.String("*"),
			MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: part.ETag}}}})
	}
	s.multipartCond = isPrecondition(err)
	if err != nil {
		s.client.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: bucket, Key: full, UploadId: up.UploadId})
	}
	return nil
}

func isCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		for _, c := range codes {
			if ae.ErrorCode() == c {
				return true
			}
		}
	}
	return false
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// isPrecondition: the store refused a conditional write (412, or 409 when
// a concurrent conditional write is in flight).
func isPrecondition(err error) bool {
	return err != nil && (isCode(err, "PreconditionFailed", "ConditionalRequestConflict") ||
		httpStatus(err) == http.StatusPreconditionFailed)
}

func (s *s3Store) URI(key string) string { return "s3://" + s.loc.bucket + "/" + s.loc.prefix + key }
func (s *s3Store) Conditional() bool     { return s.conditional }
func (s *s3Store) Close() error          { return nil }

// wrap names the URI and maps S3's errors onto the sentinels.
func (s *s3Store) wrap(op, key string, err error) error {
	switch {
	case isCode(err, "NoSuchKey", "NotFound") || (httpStatus(err) == http.StatusNotFound && !isCode(err, "NoSuchBucket")):
		err = ErrNotExist
	case isCode(err, "NoSuchBucket"):
		err = fmt.Errorf("bucket %s does not exist", s.loc.bucket)
	case httpStatus(err) == http.StatusForbidden:
		err = fmt.Errorf("permission denied (check the credentials' policy on the bucket): %w", err)
	}
	return fmt.Errorf("%s %s: %w", op, s.URI(key), err)
}

func (s *s3Store) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Attrs, error) {
	if err := CheckKey(key); err != nil {
		return Attrs{}, err
	}
	cond := opts.IfAbsent || opts.IfGeneration != ""
	switch {
	case opts.IfAbsent && opts.IfGeneration != "":
		return Attrs{}, fmt.Errorf("put %s: IfAbsent and IfGeneration together", s.URI(key))
	case cond && !s.conditional:
		return Attrs{}, s.wrap("put", key, fmt.Errorf("%w (the store ignores If-None-Match / If-Match)", ErrUnsupported))
	}
	hd, err := readHead(ctx, r, int(s.partSize))
	if err != nil {
		return Attrs{}, s.wrap("put", key, err)
	}
	sctx, doubt := withDoubt(ctx)
	in := &s3.PutObjectInput{Bucket: aws.String(s.loc.bucket), Key: aws.String(s.loc.prefix + key)}
	if opts.ContentType != "" {
		in.ContentType = aws.String(opts.ContentType)
	}
	if opts.IfAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	if opts.IfGeneration != "" {
		in.IfMatch = aws.String(opts.IfGeneration)
	}
	var (
		etag, sha string
		size      int64
	)
	if hd.small {
		size = int64(len(hd.buf))
		sha = hd.sum()
		in.Body = bytes.NewReader(hd.buf)
		in.Metadata = map[string]string{shaKey: sha}
		if s.checksum {
			sum := sha256.Sum256(hd.buf)
			in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(sum[:]))
		} else {
			// Stores that reject the flexible checksums still check
			// Content-MD5, S3's oldest integrity header.
			sum := md5.Sum(hd.buf)
			in.ContentMD5 = aws.String(base64.StdEncoding.EncodeToString(sum[:]))
		}
		out, err := s.client.PutObject(sctx, in)
		if err != nil {
			return s.putErr(ctx, key, opts, err, sha, size, doubt.Load())
		}
		etag = aws.ToString(out.ETag)
	} else {
		if cond && !s.multipartCond {
			return Attrs{}, s.wrap("put", key, fmt.Errorf("%w: the store ignores conditions on multipart uploads, and this object is larger than one part (%d bytes)", ErrUnsupported, s.partSize))
		}
		// The sha256 is known only at the end, after the metadata went
		// out with CreateMultipartUpload: Put returns it, Stat cannot.
		cr := &countingReader{r: hd.rest}
		in.Body = cr
		out, err := s.uploader.Upload(sctx, in)
		if err != nil {
			// The uploader aborts a failed upload with the caller's
			// context, which fails when that context is what ended it;
			// abort again so no parts are left to be billed.
			var mf manager.MultiUploadFailure
			if errors.As(err, &mf) && mf.UploadID() != "" {
				actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
					Bucket: in.Bucket, Key: in.Key, UploadId: aws.String(mf.UploadID())})
				cancel()
			}
			return s.putErr(ctx, key, opts, err, hd.sum(), cr.n, doubt.Load())
		}
		etag, sha, size = aws.ToString(out.ETag), hd.sum(), cr.n
	}
	// A PUT does not return the time; one HEAD does.
	a, err := s.Stat(ctx, key)
	if err != nil || strings.Trim(a.Generation, `"`) != strings.Trim(etag, `"`) {
		// Replaced (or deleted) since: report what we wrote.
		a = Attrs{Key: key, Size: size, Generation: etag}
	}
	a.SHA256 = sha
	return a, nil
}

// putErr maps a failed Put's error. A refused conditional write, or a
// multipart upload whose completion is not found, is settled by settle:
// a try whose answer was lost may have written the object (sha and size
// are what this Put sent).
func (s *s3Store) putErr(ctx context.Context, key string, opts PutOptions, err error, sha string, size int64, doubt bool) (Attrs, error) {
	failure := err
	switch {
	case isPrecondition(err) && opts.IfAbsent:
		failure = ErrExists
	case isPrecondition(err) && opts.IfGeneration != "":
		failure = ErrStale
	case isCode(err, "NoSuchUpload"):
		failure = fmt.Errorf("multipart upload gone before its completion: %w", err)
	case isCode(err, "NoSuchKey") && opts.IfGeneration != "":
		return Attrs{}, s.wrap("put", key, ErrStale)
	default:
		return Attrs{}, s.wrap("put", key, err)
	}
	a, err := settle(ctx, s, key, sha, size, doubt, failure)
	if err != nil {
		return Attrs{}, fmt.Errorf("put %s: %w", s.URI(key), err)
	}
	return a, nil
}

func (s *s3Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.GetRange(ctx, key, 0, -1)
}

func (s *s3Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("read %s: negative offset %d", s.URI(key), offset)
	}
	if length == 0 {
		if _, err := s.Stat(ctx, key); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	r := &s3Reader{s: s, ctx: ctx, key: key, off: offset, left: length}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// s3Reader reads one object and, when the stream breaks (a reset, a
// stall), resumes where it stopped with a ranged GET of the same ETag.
type s3Reader struct {
	s     *s3Store
	ctx   context.Context
	key   string
	off   int64 // next byte to read
	left  int64 // bytes still wanted; < 0: to the end
	etag  string
	body  io.ReadCloser
	tries int
}

func (r *s3Reader) open() error {
	in := &s3.GetObjectInput{Bucket: aws.String(r.s.loc.bucket), Key: aws.String(r.s.loc.prefix + r.key)}
	switch {
	case r.left > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", r.off, r.off+r.left-1))
	case r.off > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", r.off))
	}
	if r.etag != "" {
		in.IfMatch = aws.String(r.etag) // a resumed read must not mix two versions
	}
	out, err := r.s.client.GetObject(r.ctx, in, func(o *s3.Options) {
		if in.Range != nil {
			// A whole-object checksum cannot check a range; some stores
			// send it anyway.
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	if err != nil {
		if r.etag != "" && isPrecondition(err) {
			return r.s.wrap("read", r.key, fmt.Errorf("object replaced while being read: %w", err))
		}
		return r.s.wrap("read", r.key, err)
	}
	r.body, r.etag = out.Body, aws.ToString(out.ETag)
	return nil
}

func (r *s3Reader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if r.left > 0 && int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.body.Read(p)
	r.off += int64(n)
	if r.left > 0 {
		r.left -= int64(n)
	}
	if err == nil || err == io.EOF || r.ctx.Err() != nil || r.tries+1 >= r.s.attempts {
		return n, err
	}
	r.tries++
	r.body.Close()
	if err := r.open(); err != nil {
		r.body = io.NopCloser(strings.NewReader(""))
		return n, err
	}
	return n, nil
}

func (r *s3Reader) Close() error { return r.body.Close() }

func (s *s3Store) Stat(ctx context.Context, key string) (Attrs, error) {
	if err := CheckKey(key); err != nil {
		return Attrs{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.loc.bucket), Key: aws.String(s.loc.prefix + key)})
	if err != nil {
		return Attrs{}, s.wrap("stat", key, err)
	}
	return Attrs{
		Key:        key,
		Size:       aws.ToInt64(out.ContentLength),
		SHA256:     out.Metadata[shaKey],
		Generation: aws.ToString(out.ETag),
		Updated:    aws.ToTime(out.LastModified),
	}, nil
}

// List pages through ListObjectsV2 (1,000 keys a page). S3 listings carry
// no user metadata, so Attrs.SHA256 is empty here: Stat has it.
func (s *s3Store) List(ctx context.Context, prefix string, fn func(Attrs) error) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.loc.bucket), Prefix: aws.String(s.loc.prefix + prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s.wrap("list", prefix, err)
		}
		for _, o := range page.Contents {
			key := strings.TrimPrefix(aws.ToString(o.Key), s.loc.prefix)
			if CheckKey(key) != nil {
				continue // folder placeholders, reserved keys
			}
			a := Attrs{Key: key, Size: aws.ToInt64(o.Size), Generation: aws.ToString(o.ETag), Updated: aws.ToTime(o.LastModified)}
			if err := fn(a); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *s3Store) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.loc.bucket), Key: aws.String(s.loc.prefix + key)})
	if err != nil && !isCode(err, "NoSuchKey", "NotFound") {
		return s.wrap("delete", key, err)
	}
	return nil
}

// Copy is server-side (CopyObject, metadata and sha256 included) up to
// 5 GiB, CopyObject's limit; larger objects stream through this client.
func (s *s3Store) Copy(ctx context.Context, dst, src string) (Attrs, error) {
	if err := CheckKey(dst); err != nil {
		return Attrs{}, err
	}
	sa, err := s.Stat(ctx, src)
	if err != nil {
		return Attrs{}, fmt.Errorf("copy to %s: %w", s.URI(dst), err)
	}
	if sa.Size > maxCopy {
		r, err := s.Get(ctx, src)
		if err != nil {
			return Attrs{}, fmt.Errorf("copy to %s: %w", s.URI(dst), err)
		}
		defer r.Close()
		return s.Put(ctx, dst, r, PutOptions{})
	}
	_, err = s.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket:            aws.String(s.loc.bucket),
		Key:               aws.String(s.loc.prefix + dst),
		CopySource:        aws.String(escapePath(s.loc.bucket + "/" + s.loc.prefix + src)),
		CopySourceIfMatch: aws.String(sa.Generation),
	})
	if err != nil {
		return Attrs{}, s.wrap("copy "+s.URI(src)+" to", dst, err)
	}
	a, err := s.Stat(ctx, dst)
	if err != nil {
		return Attrs{}, err
	}
	if a.SHA256 == "" {
		a.SHA256 = sa.SHA256
	}
	return a, nil
}

// escapePath URL-encodes each segment of p, "+" included, as
// x-amz-copy-source wants.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
	}
	return strings.Join(segs, "/")
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// stallClient is httpTransport's stall guard for the SDK's own client
// (which must stay the SDK's, to take custom CA bundles).
type stallClient struct {
	c       aws.HTTPClient
	timeout time.Duration
}

func (s stallClient) Do(r *http.Request) (*http.Response, error) {
	resp, err := s.c.Do(r)
	noteDoubt(r, resp, err)
	return guardBody(resp, err)(s.timeout)
}
