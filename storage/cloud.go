package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// httpTransport is the transport of both cloud clients. A request whose
// response headers do not come within StallTimeout fails as a timeout, which
// both SDKs retry; a response body that sends nothing for StallTimeout
// fails its read with io.ErrUnexpectedEOF, on which reads resume (the GCS
// client itself; s3Reader for S3).
func httpTransport(c Config) http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = c.StallTimeout
	t.MaxIdleConnsPerHost = 64
	return stallGuard{t, c.StallTimeout}
}

type stallGuard struct {
	base    http.RoundTripper
	timeout time.Duration
}

func (g stallGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	return guardBody(g.base.RoundTrip(r))(g.timeout)
}

// guardBody wraps a response's body in a stallBody.
func guardBody(resp *http.Response, err error) func(time.Duration) (*http.Response, error) {
	return func(timeout time.Duration) (*http.Response, error) {
		if err != nil {
			return resp, err
		}
		resp.Body = newStallBody(resp.Body, timeout)
		return resp, nil
	}
}

func newStallBody(rc io.ReadCloser, timeout time.Duration) *stallBody {
	b := &stallBody{rc: rc, timeout: timeout}
	b.timer = time.AfterFunc(time.Hour, func() {
		b.stalled.Store(true)
		b.rc.Close() // unblocks the Read
	})
	b.timer.Stop()
	return b
}

// stallBody closes its body when one Read waits longer than timeout.
type stallBody struct {
	rc      io.ReadCloser
	timeout time.Duration
	timer   *time.Timer
	stalled atomic.Bool
}

func (b *stallBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.timeout)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	if err != nil && b.stalled.Load() {
		err = fmt.Errorf("response body sent nothing for %v: %w", b.timeout, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (b *stallBody) Close() error {
	b.timer.Stop()
	return b.rc.Close()
}

// head reads up to limit bytes of r. small reports that r ended within
// them: the whole object is in buf and its sha256 is known before the
// upload starts, so it can travel as metadata in the one request. Larger
// objects stream on from rest, hashed by h as they go.
type head struct {
	buf   []byte
	small bool
	h     hash.Hash
	rest  io.Reader // buf then the remainder of r, through h
}

func readHead(ctx context.Context, r io.Reader, limit int) (head, error) {
	var b bytes.Buffer
	cr := ctxReader{ctx, r}
	n, err := io.CopyN(&b, cr, int64(limit)+1)
	if err != nil && err != io.EOF {
		return head{}, err
	}
	h := sha256.New()
	hd := head{buf: b.Bytes(), small: n <= int64(limit), h: h}
	hd.rest = io.TeeReader(io.MultiReader(bytes.NewReader(hd.buf), cr), h)
	if hd.small {
		h.Write(hd.buf)
	}
	return hd, nil
}

func (hd head) sum() string { return hex.EncodeToString(hd.h.Sum(nil)) }
