package teacher

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openai/openai-go/v3"
)

// The SDKs turn HTTP errors into their own types, and genai's drops the
// headers. A RoundTripper under both records the status and the rate-limit
// headers of each call's last response into a holder carried by the call's
// context, so pacing can honour Retry-After whichever SDK made the call.

type respMetaKey struct{}

type respMeta struct {
	mu     sync.Mutex
	status int
	header http.Header
}

// withRespMeta returns ctx with a holder for the response metadata, reusing
// one a caller up the chain (the pacer) put there.
func withRespMeta(ctx context.Context) (context.Context, *respMeta) {
	if m, ok := ctx.Value(respMetaKey{}).(*respMeta); ok {
		return ctx, m
	}
	m := &respMeta{}
	return context.WithValue(ctx, respMetaKey{}, m), m
}

func (m *respMeta) set(status int, h http.Header) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status, m.header = status, h
}

func (m *respMeta) get() (int, http.Header) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status, m.header
}

type metaTransport struct{ base http.RoundTripper }

func (t metaTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if m, ok := req.Context().Value(respMetaKey{}).(*respMeta); ok {
		if resp != nil {
			m.set(resp.StatusCode, resp.Header.Clone())
		} else {
			m.set(0, nil) // no response: not an earlier attempt's status
		}
	}
	return resp, err
}

// newHTTPClient returns a client for the SDKs: no client timeout (each
// attempt has its own context deadline), enough idle connections for the
// configured concurrency, and the metadata recorder.
func newHTTPClient(base http.RoundTripper, concurrency int) *http.Client {
	if base == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = 2 * concurrency
		tr.MaxIdleConnsPerHost = 2 * concurrency
		base = tr
	}
	return &http.Client{Transport: metaTransport{base: base}}
}

// retryAfter reads how long the provider asks us to wait: Retry-After
// (seconds or an HTTP date), retry-after-ms, or OpenAI's
// x-ratelimit-reset-requests / -tokens ("1s", "6m0s", "20ms").
func retryAfter(h http.Header, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	if v := h.Get("retry-after-ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
			return time.Duration(s * float64(time.Second))
		}
		if t, err := http.ParseTime(v); err == nil && t.After(now) {
			return t.Sub(now)
		}
	}
	var d time.Duration
	for _, k := range []string{"x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"} {
		if v := h.Get(k); v != "" {
			if x, err := time.ParseDuration(v); err == nil && x > d {
				d = x
			}
		}
	}
	return d
}

// exhausted reports whether rate-limit headers say the next request would be
// refused (x-ratelimit-remaining-requests: 0), and until when.
func exhausted(h http.Header, now time.Time) time.Duration {
	if h == nil || h.Get("x-ratelimit-remaining-requests") != "0" {
		return 0
	}
	return retryAfter(h, now)
}

// redactor scrubs a secret out of error text.
type redactor string

func (r redactor) scrub(s string) string {
	if len(r) < 4 {
		return s
	}
	return strings.ReplaceAll(s, string(r), "[redacted]")
}

// apiError turns whatever a provider SDK returned into an error that carries
// no key: an *APIError when there was an HTTP status, a scrubbed transport
// error otherwise. Context errors pass through unchanged.
func apiError(provider string, key redactor, meta *respMeta, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	status, h := meta.get()
	if status >= 400 {
		text := err.Error()
		var oe *openai.Error
		if errors.As(err, &oe) && oe.Message != "" {
			text += ": " + oe.Message // openai-go leaves the server's message out of Error()
		}
		msg := key.scrub(text)
		if len(msg) > 500 {
			msg = msg[:500] + "…"
		}
		return &APIError{Provider: provider, Status: status, RetryAfter: retryAfter(h, time.Now()), Message: msg}
	}
	return &transportError{msg: provider + ": " + key.scrub(err.Error())}
}

// transportError is a failure without an HTTP status: a reset, a refused
// connection, an EOF, or a body that is not the wire format. All of them are
// worth another attempt.
type transportError struct{ msg string }

func (e *transportError) Error() string { return e.msg }

// retryable: worth sending again after a backoff.
func retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500 || ae.Status == 408 || ae.Status == 409
	}
	var te *transportError
	return errors.As(err, &te)
}

// rateLimited returns the provider's 429 (or 529 "overloaded") error, if err is one.
func rateLimited(err error) (*APIError, bool) {
	var ae *APIError
	if errors.As(err, &ae) && (ae.Status == 429 || ae.Status == 529) {
		return ae, true
	}
	return nil, false
}
