package teacher

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/statjob/statjob/teacher/teachertest"
)

// progressLog records Options.Progress calls from many goroutines.
type progressLog struct {
	mu    sync.Mutex
	calls map[string][][2]int // name → (done, total) in arrival order
}

func (p *progressLog) record(name string, done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[name] = append(p.calls[name], [2]int{done, total})
}

// Every item of a fan-out is reported once as it finishes, with the
// fan-out's name and size, whether it was answered by the provider, taken
// from the cache or failed; the last report says all are done.
func TestProgressCountsEveryItem(t *testing.T) {
	srv, cfg := fake(t, ProviderOpenAI)
	cfg.Limits.Concurrency = 6
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // replies overtake each other
		if c.Messages[0].Text == "7" {
			return teachertest.Answer{Text: "unreadable"} // re-asks included
		}
		return teachertest.Answer{Text: "re:" + c.Last()}
	}
	log := &progressLog{calls: map[string][][2]int{}}
	tc, err := New(context.Background(), cfg, localStore(t), &Options{Progress: log.record})
	if err != nil {
		t.Fatal(err)
	}
	var reqs []*Request
	for i := range 50 {
		reqs = append(reqs, userReq(strconv.Itoa(i), 0))
	}
	check := func(name string, n int) {
		t.Helper()
		log.mu.Lock()
		defer log.mu.Unlock()
		calls := log.calls[name]
		var done []int
		for _, c := range calls {
			if c[1] != n {
				t.Fatalf("%s: total %d, want %d", name, c[1], n)
			}
			done = append(done, c[0])
		}
		slices.Sort(done)
		for i, d := range done {
			if d != i+1 {
				t.Fatalf("%s: done values %v, want 1..%d once each", name, done, n)
			}
		}
		if len(done) != n {
			t.Fatalf("%s: %d reports, want %d", name, len(done), n)
		}
	}
	parse := func(text string) (string, error) {
		if text == "unreadable" {
			return "", errors.New("not this one")
		}
		return text, nil
	}
	res := Run(context.Background(), tc, "questions", reqs, parse)
	if res[7].Err == nil {
		t.Fatal("item 7 did not fail")
	}
	check("questions", 50) // the failed item counts as finished
	// Again: every answered item from the cache, still reported.
	Map(context.Background(), tc, reqs[:20], Text)
	check("", 20)
	if hits := tc.Stats().CacheHits; hits < 19 {
		t.Fatalf("cache hits %d, want the second pass from the cache", hits)
	}
}
