package storagetest

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
)

// Faults says which requests a FaultProxy spoils. Requests are numbered
// from 0 as they arrive: request i is answered 503 when i is a multiple of
// UnavailableEvery, else held unanswered (its body read) until the client
// gives up when i%StallEvery == StallEvery/2. Faults happen before the
// request reaches the server, so a retry never repeats a write that took
// effect. Zero disables a kind of fault.
type Faults struct {
	UnavailableEvery, StallEvery int
	// UnavailableStatus is the status of the UnavailableEvery answers; 0
	// means 503. 429 (too many requests) is the other one clouds send.
	UnavailableStatus int
	// ResetEvery: request i with i%ResetEvery == ResetEvery-1 has its
	// connection reset (TCP RST) instead of an answer.
	ResetEvery int
	// BodyStallEvery: of the GET responses, numbered from 0, those where
	// n%BodyStallEvery == 0 send their headers and first 64 KiB, then
	// nothing, until the client gives up.
	BodyStallEvery int
	// StripConditions removes If-Match / If-None-Match from requests:
	// a store that ignores conditional writes, as some S3-compatible ones do.
	StripConditions bool
}

// FaultCounts is what a FaultProxy did so far.
type FaultCounts struct {
	Requests, Unavailable, Stalled, Reset int64
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
	var n, gets, unavailable, stalled, reset atomic.Int64
	status := f.UnavailableStatus
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host
		if f.StripConditions {
			r.Out.Header.Del("If-Match")
			r.Out.Header.Del("If-None-Match")
		}
	}}
	rp.ModifyResponse = func(resp *http.Response) error {
		if f.BodyStallEvery > 0 && resp.Request.Method == http.MethodGet && resp.StatusCode/100 == 2 &&
			(gets.Add(1)-1)%int64(f.BodyStallEvery) == 0 {
			stalled.Add(1)
			resp.Body = &stallAfter{rc: resp.Body, left: 64 << 10, done: resp.Request.Context().Done()}
		}
		return nil
	}
	rp.FlushInterval = -1 // pass each write on at once, so the client sees the first bytes
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1) - 1
		switch {
		case f.UnavailableEvery > 0 && i%int64(f.UnavailableEvery) == 0:
			unavailable.Add(1)
			io.Copy(io.Discard, r.Body)
			http.Error(w, "injected: "+http.StatusText(status), status)
		case f.ResetEvery > 0 && i%int64(f.ResetEvery) == int64(f.ResetEvery-1):
			reset.Add(1)
			io.Copy(io.Discard, r.Body)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // close with RST: "connection reset by peer"
			}
			conn.Close()
		case f.StallEvery > 0 && i%int64(f.StallEvery) == int64(f.StallEvery/2):
			stalled.Add(1)
			io.Copy(io.Discard, r.Body)
			<-r.Context().Done() // the client's stall timeout closes the connection
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() FaultCounts {
		return FaultCounts{n.Load(), unavailable.Load(), stalled.Load(), reset.Load()}
	}
}

// stallAfter passes left bytes on, then blocks until done.
type stallAfter struct {
	rc   io.ReadCloser
	left int
	done <-chan struct{}
}

func (s *stallAfter) Read(p []byte) (int, error) {
	if s.left <= 0 {
		<-s.done
		return 0, io.ErrUnexpectedEOF
	}
	if len(p) > s.left {
		p = p[:s.left]
	}
	n, err := s.rc.Read(p)
	s.left -= n
	return n, err
}

func (s *stallAfter) Close() error { return s.rc.Close() }
