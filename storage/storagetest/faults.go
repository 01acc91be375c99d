package storagetest

import (
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statjob/statjob/storage"
)

// Faults says which requests a FaultProxy spoils, in two ways.
//
// By arrival order (deterministic): requests are numbered from 0 as they
// arrive; request i is answered UnavailableStatus when i is a multiple of
// UnavailableEvery, has its connection reset when i%ResetEvery ==
// ResetEvery-1, else is held unanswered (its body read) until the client
// gives up when i%StallEvery == StallEvery/2.
//
// By seeded chance: each request not spoiled by the counters draws one
// number from a generator seeded with Seed and is answered
// UnavailableStatus with probability Unavailable, reset with probability
// Reset, or has its answer lost with probability Lost.
//
// Unavailable answers and resets happen before the request reaches the
// server, so a retry never repeats a write that took effect. A lost answer
// is the nasty case of real stores: the request is forwarded and applied,
// then the client gets 503 (or, with LostByReset, a reset connection)
// instead of the server's answer, and its retry of a conditional write
// fails its precondition although the first try succeeded. Zero disables a
// kind of fault.
type Faults struct {
	UnavailableEvery, StallEvery int
	// UnavailableStatus is the status of the unavailable answers; 0 means
	// 503. 429 (too many requests) is the other one clouds send.
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

	// Seed seeds the draws of Unavailable, Reset and Lost.
	Seed uint64
	// Unavailable, Reset and Lost are the fractions (0 to 1, summing to at
	// most 1) of requests answered UnavailableStatus, reset, or applied with
	// their answer lost.
	Unavailable, Reset, Lost float64
	// LostByReset resets the connection of a lost answer instead of
	// answering 503.
	LostByReset bool
}

// FaultCounts is what a FaultProxy did so far. LostWrites counts the lost
// answers of requests that change objects (PUT, POST, PATCH, DELETE).
type FaultCounts struct {
	Requests, Unavailable, Stalled, Reset, Lost, LostWrites int64
}

// Add adds o to c.
func (c *FaultCounts) Add(o FaultCounts) {
	c.Requests += o.Requests
	c.Unavailable += o.Unavailable
	c.Stalled += o.Stalled
	c.Reset += o.Reset
	c.Lost += o.Lost
	c.LostWrites += o.LostWrites
}

// fault is what the proxy does with one request.
type fault int

const (
	forward fault = iota
	unavailable
	reset
	stall
	lost
)

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
	var (
		n, gets                                                       atomic.Int64
		cUnavailable, cStalled, cReset, cLost, cLostWrites, cRequests atomic.Int64
		mu                                                            sync.Mutex
		rng                                                           = rand.New(rand.NewPCG(f.Seed, 0x5eed))
	)
	status := f.UnavailableStatus
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	choose := func() fault {
		i := n.Add(1) - 1
		switch {
		case f.UnavailableEvery > 0 && i%int64(f.UnavailableEvery) == 0:
			return unavailable
		case f.ResetEvery > 0 && i%int64(f.ResetEvery) == int64(f.ResetEvery-1):
			return reset
		case f.StallEvery > 0 && i%int64(f.StallEvery) == int64(f.StallEvery/2):
			return stall
		}
		if f.Unavailable+f.Reset+f.Lost == 0 {
			return forward
		}
		mu.Lock()
		x := rng.Float64()
		mu.Unlock()
		switch {
		case x < f.Unavailable:
			return unavailable
		case x < f.Unavailable+f.Reset:
			return reset
		case x < f.Unavailable+f.Reset+f.Lost:
			return lost
		}
		return forward
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
			cStalled.Add(1)
			resp.Body = &stallAfter{rc: resp.Body, left: 64 << 10, done: resp.Request.Context().Done()}
		}
		return nil
	}
	rp.FlushInterval = -1 // pass each write on at once, so the client sees the first bytes
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cRequests.Add(1)
		switch choose() {
		case unavailable:
			cUnavailable.Add(1)
			io.Copy(io.Discard, r.Body)
			http.Error(w, "injected: "+http.StatusText(status), status)
		case reset:
			cReset.Add(1)
			io.Copy(io.Discard, r.Body)
			resetConn(w)
		case stall:
			cStalled.Add(1)
			io.Copy(io.Discard, r.Body)
			<-r.Context().Done() // the client's stall timeout closes the connection
		case lost:
			cLost.Add(1)
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				cLostWrites.Add(1)
			}
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r) // the server applies the request; its answer goes nowhere
			if f.LostByReset {
				resetConn(w)
				return
			}
			http.Error(w, "injected: answer lost", http.StatusServiceUnavailable)
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() FaultCounts {
		return FaultCounts{Requests: cRequests.Load(), Unavailable: cUnavailable.Load(), Stalled: cStalled.Load(),
			Reset: cReset.Load(), Lost: cLost.Load(), LostWrites: cLostWrites.Load()}
	}
}

// resetConn closes the request's connection with a TCP RST ("connection
// reset by peer") instead of an answer.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// Flaky puts a FaultProxy injecting f in front of the emulator c points at
// (its GCS or S3 endpoint, by Root) and returns the Config of a store
// through it, with the retry settings tuned for tests: small backoffs, ten
// tries, and a stall timeout of three seconds (a loaded 2-core machine
// under -race can take over a second to answer a forwarded request; a
// timeout there makes the client repeat a request the emulator already
// took, which fake-gcs-server answers 404 for a finished resumable upload).
func Flaky(t testing.TB, c storage.Config, f Faults) (storage.Config, func() FaultCounts) {
	t.Helper()
	ep := &c.S3.Endpoint
	if strings.HasPrefix(c.Root, "gs://") {
		ep = &c.GCS.Endpoint
	}
	proxy, counts := FaultProxy(t, *ep, f)
	*ep = proxy
	c.StallTimeout = 3 * time.Second
	c.MaxBackoff = 50 * time.Millisecond
	c.MaxAttempts = 10
	return c, counts
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
