package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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
	resp, err := g.base.RoundTrip(r)
	noteDoubt(r, resp, err)
	return guardBody(resp, err)(g.timeout)
}

// firstBackoff is the longest wait before the first retry (at most
// MaxBackoff); each further retry may wait twice as long, up to MaxBackoff.
const firstBackoff = 100 * time.Millisecond

// doubtKey is the context key of a Put's doubt flag.
type doubtKey struct{}

// withDoubt returns ctx carrying a flag that the cloud transports set when
// a request made under it gets no clear answer (see noteDoubt).
func withDoubt(ctx context.Context) (context.Context, *atomic.Bool) {
	d := new(atomic.Bool)
	return context.WithValue(ctx, doubtKey{}, d), d
}

// noteDoubt sets the doubt flag of r's context when r got no answer (a
// reset, a stall) or a 408, 429 or 5xx one: the store may have applied it
// all the same, and the SDK repeats it.
func noteDoubt(r *http.Request, resp *http.Response, err error) {
	d, _ := r.Context().Value(doubtKey{}).(*atomic.Bool)
	if d != nil && (err != nil || resp.StatusCode == http.StatusRequestTimeout ||
		resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500) {
		d.Store(true)
	}
}

// ownWrite settles a conditional Put that the store refused after one of
// its tries got no clear answer: that try may have been applied, and the
// SDK's retry then failed its precondition on the object it had just
// written. It reports whether key now holds exactly the bytes the Put sent
// (sha256 sha, size bytes), with the object's attributes. An object written
// in parts carries no sha256 of its own; it is read and hashed (rare: only
// after a lost answer). Another writer's object is never taken for ours
// unless it holds the very same bytes.
func ownWrite(ctx context.Context, s Store, key, sha string, size int64) (Attrs, bool, error) {
	a, err := s.Stat(ctx, key)
	if errors.Is(err, ErrNotExist) {
		return Attrs{}, false, nil
	}
	if err != nil || a.Size != size {
		return Attrs{}, false, err
	}
	if a.SHA256 != "" {
		return a, a.SHA256 == sha, nil
	}
	r, err := s.Get(ctx, key)
	if err != nil {
		return Attrs{}, false, err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return Attrs{}, false, fmt.Errorf("read back %s: %w", s.URI(key), err)
	}
	again, err := s.Stat(ctx, key)
	if err != nil || again.Generation != a.Generation {
		return Attrs{}, false, err // replaced while being read: not ours now
	}
	a.SHA256 = hex.EncodeToString(h.Sum(nil))
	return a, a.SHA256 == sha, nil
}

// settle is the outcome of a Put that failed with failure after one of
// its tries got no clear answer (doubt): that try may have been applied,
// and its retry then failed because of it — a conditional write's
// precondition (ErrExists, ErrStale), or an S3 multipart upload already
// completed. The Put succeeded if key holds exactly the bytes it sent
// (ownWrite); else failure stands. If reading back fails, the outcome is
// unknown: an error that is neither sentinel.
func settle(ctx context.Context, s Store, key, sha string, size int64, doubt bool, failure error) (Attrs, error) {
	if !doubt {
		return Attrs{}, failure
	}
	a, ours, err := ownWrite(ctx, s, key, sha, size)
	switch {
	case err != nil:
		return Attrs{}, fmt.Errorf("%v, after a try whose answer was lost; reading back to tell whether that try was applied: %w", failure, err)
	case ours:
		a.SHA256 = sha
		return a, nil
	}
	return Attrs{}, failure
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
