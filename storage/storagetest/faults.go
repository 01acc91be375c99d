package storagetest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
)

// Faults says which requests a FaultProxy spoils. Requests are numbered as
// they arrive; of every Every requests, the first Unavailable are answered
// 503 and the next Stall are held unanswered (their bodies read) until the
// client gives up. Faults happen before the request reaches the server, so
// a retry never repeats a write that took effect.
type Faults struct {
	Every, Unavailable, Stall int
	// StripConditions removes If-Match / If-None-Match from requests:
	// a store that ignores conditional writes, as some S3-compatible ones do.
	StripConditions bool
}

// FaultCounts is what a FaultProxy did so far.
type FaultCounts struct {
	Requests, Unavailable, Stalled int64
}

// FaultProxy starts a reverse proxy on loopback in front of target (an
// emulator's base URL) that injects f, and returns its URL and a func
// reporting its counts. It keeps the Host header, so signed S3 requests and
// GCS resumable-upload URLs stay valid.
func FaultProxy(t testing.TB, target string, f Faults) (string, func() FaultCounts) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var n, unavailable, stalled atomic.Int64
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host
		if f.StripConditions {
			r.Out.Header.Del("If-Match")
			r.Out.Header.Del("If-None-Match")
		}
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1) - 1
		if f.Every > 0 {
			switch k := int(i % int64(f.Every)); {
			case k < f.Unavailable:
				unavailable.Add(1)
				io.Copy(io.Discard, r.Body)
				http.Error(w, "injected: service unavailable", http.StatusServiceUnavailable)
				return
			case k < f.Unavailable+f.Stall:
				stalled.Add(1)
				io.Copy(io.Discard, r.Body)
				<-r.Context().Done() // the client's stall timeout closes the connection
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() FaultCounts {
		return FaultCounts{n.Load(), unavailable.Load(), stalled.Load()}
	}
}
