// Package teachertest runs local stand-ins for the teacher providers'
// HTTP APIs — OpenAI chat completions, files and batches; Gemini
// generateContent on the Gemini API and Vertex AI paths; Vertex batch
// prediction — speaking their wire formats, so the real SDKs can be tested
// against them with injected latency, rate limits, errors, hangs, and
// malformed or truncated replies.
package teachertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statjob/statjob/storage"
)

// Call is what the server saw of one generation request.
type Call struct {
	Model     string
	System    string
	Messages  []Msg // user and assistant turns ("assistant" for Gemini's "model")
	MaxTokens int
	Seed      *int64
	Schema    bool // a JSON schema was sent
	Header    http.Header
	Path      string // the request's URL path
}

// Msg is one turn of a Call.
type Msg struct{ Role, Text string }

// Last is the text of the last turn.
func (c Call) Last() string {
	if len(c.Messages) == 0 {
		return ""
	}
	return c.Messages[len(c.Messages)-1].Text
}

// Answer is what the server replies to a Call.
type Answer struct {
	Text      string
	Truncated bool // finish reason length / MAX_TOKENS
	Input     int  // usage; 0: one token per 4 bytes of the request
	Output    int  // usage; 0: one token per 4 bytes of Text
	Thoughts  int  // Gemini thinking tokens (thoughtsTokenCount), billed as output
}

// Fault replaces the answer of one request.
type Fault struct {
	Status     int    // HTTP status to return (0: 200 with Body)
	RetryAfter string // Retry-After header value
	Body       string // raw response body (malformed wire output when Status is 0)
	Hang       bool   // never answer; wait for the client to give up
	Reset      bool   // close the connection without a response
	Header     map[string]string
}

// Server is one fake provider endpoint.
type Server struct {
	*httptest.Server
	// Answer decides the reply to each call; the default echoes the last turn.
	Answer func(Call) Answer
	// Latency is added to every generation request.
	Latency time.Duration
	// Store is where Vertex batch input is read and output written.
	Store storage.Store
	// BatchPolls: how many status checks a batch stays running (default 1).
	BatchPolls int
	// BatchFail says which batch items fail (by custom_id / key).
	BatchFail func(id string) bool
	// OnPoll is called at each status check of a batch with the check's number.
	OnPoll func(id string, n int)
	// ListPage caps the batch jobs in one page of a list (0: as the client
	// asks, up to 100).
	ListPage int

	faults              chan Fault
	calls, inflight, hi atomic.Int64
	bmu                 sync.Mutex // serialises batch status checks
	mu                  sync.Mutex
	seen                []Call
	files               map[string][]byte
	batches             map[string]*batch
	order               []*batch // batch jobs, oldest first
	nextID              int
}

type batch struct {
	id, input, output, prefix, model string
	polls                            int
	created                          map[string]any
	metadata                         map[string]string
}

// addBatch registers a new batch job.
func (s *Server) addBatch(b *batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches[b.id] = b
	s.order = append(s.order, b)
}

// listBatches returns one page of the batch jobs that keep passes, newest
// first as both providers list them, starting after the job named after;
// more says whether jobs follow the page.
func (s *Server) listBatches(after string, limit int, keep func(*batch) bool) (page []*batch, more bool) {
	if limit <= 0 || limit > 100 {
		limit = 100
	}
	if s.ListPage > 0 {
		limit = min(limit, s.ListPage)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	started := after == ""
	for i := len(s.order) - 1; i >= 0; i-- {
		b := s.order[i]
		if !started {
			started = b.id == after
			continue
		}
		if !keep(b) {
			continue
		}
		if len(page) == limit {
			return page, true
		}
		page = append(page, b)
	}
	return page, false
}

func newServer(t testing.TB, route func(s *Server, w http.ResponseWriter, r *http.Request)) *Server {
	s := &Server{faults: make(chan Fault, 1024), BatchPolls: 1, files: map[string][]byte{}, batches: map[string]*batch{},
		Answer: func(c Call) Answer { return Answer{Text: c.Last()} }}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { route(s, w, r) }))
	if t != nil {
		t.Cleanup(s.Close)
	}
	return s
}

// Fail queues faults; each one replaces the answer of the next generation
// request, in order.
func (s *Server) Fail(fs ...Fault) {
	for _, f := range fs {
		s.faults <- f
	}
}

// Calls counts the generation requests served (faults included).
func (s *Server) Calls() int { return int(s.calls.Load()) }

// MaxInFlight is the most generation requests the server held at once.
func (s *Server) MaxInFlight() int { return int(s.hi.Load()) }

// Batches counts the batch jobs created.
func (s *Server) Batches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.batches)
}

// Seen returns the calls answered so far.
func (s *Server) Seen() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.seen...)
}

// serve runs one generation request: counting, latency, faults, answer.
// ok is false when a fault was written instead.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, c Call, errBody func(int, string) string) (Answer, bool) {
	s.calls.Add(1)
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for {
		h := s.hi.Load()
		if n <= h || s.hi.CompareAndSwap(h, n) {
			break
		}
	}
	if s.Latency > 0 {
		select {
		case <-time.After(s.Latency):
		case <-r.Context().Done():
			return Answer{}, false
		}
	}
	select {
	case f := <-s.faults:
		if f.Hang {
			<-r.Context().Done()
			return Answer{}, false
		}
		if f.Reset {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return Answer{}, false
		}
		for k, v := range f.Header {
			w.Header().Set(k, v)
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		if f.Status == 0 {
			w.WriteHeader(200)
			fmt.Fprint(w, f.Body)
			return Answer{}, false
		}
		w.WriteHeader(f.Status)
		body := f.Body
		if body == "" {
			body = errBody(f.Status, http.StatusText(f.Status))
		}
		fmt.Fprint(w, body)
		return Answer{}, false
	default:
	}
	c.Header, c.Path = r.Header.Clone(), r.URL.Path
	a := s.Answer(c)
	s.mu.Lock()
	s.seen = append(s.seen, c)
	s.mu.Unlock()
	if a.Input == 0 {
		for _, m := range c.Messages {
			a.Input += len(m.Text)/4 + 1
		}
		a.Input += len(c.System) / 4
	}
	if a.Output == 0 {
		a.Output = len(a.Text)/4 + 1
	}
	return a, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) newID(prefix string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	return fmt.Sprintf("%s-%d", prefix, s.nextID)
}

// storeKey turns a URI of Store back into its key.
func (s *Server) storeKey(uri string) (string, error) {
	if s.Store == nil {
		return "", fmt.Errorf("no store attached to the fake server")
	}
	root := strings.TrimSuffix(s.Store.URI("x"), "x")
	if !strings.HasPrefix(uri, root) {
		return "", fmt.Errorf("%s is outside the store %s", uri, root)
	}
	return strings.TrimPrefix(uri, root), nil
}

var storagePut = storage.PutOptions{ContentType: "application/jsonl"}
