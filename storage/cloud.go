package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"net/http"
)

// httpTransport is the transport of both cloud clients: a request whose
// response headers do not come within StallTimeout fails as a timeout, which
// both SDKs retry.
func httpTransport(c Config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = c.StallTimeout
	t.MaxIdleConnsPerHost = 64
	return t
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
