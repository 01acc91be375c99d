package teacher

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/teacher/teachertest"
)

// batchFake starts provider p's fake with batch mode on and a store for the
// jobs' files.
func batchFake(t *testing.T, p string) (*teachertest.Server, Config, storage.Store) {
	srv, cfg := fake(t, p)
	srv.Store = localStore(t)
	cfg.Batch.Enabled = true
	return srv, cfg, srv.Store
}

// A batch job is created once: a restart polls the recorded job, the
// replies land in the cache, and the items the batch failed are retried
// online by the Map that follows.
func TestBatchResumeAndOnlineRetry(t *testing.T) {
	for _, p := range []string{ProviderOpenAI, ProviderVertex} {
		t.Run(p, func(t *testing.T) {
			srv, cfg, store := batchFake(t, p)
			srv.BatchPolls = 2
			srv.Answer = func(c teachertest.Call) teachertest.Answer {
				return teachertest.Answer{Text: "<question>" + c.Last() + "</question>", Input: 5, Output: 3}
			}
			var reqs []*Request
			for i := range 30 {
				reqs = append(reqs, userReq("q"+strconv.Itoa(i), i%2))
			}
			failKeys := map[string]bool{}
			for _, i := range []int{3, 17} {
				failKeys[CacheKey(cfg.Provider, cfg.Model, reqs[i])] = true
			}
			srv.BatchFail = func(id string) bool { return failKeys[id] }

			// Warm the cache with two items: the batch must leave them out.
			tc0 := newTeacher(t, cfg, store, nil)
			Map(context.Background(), tc0, reqs[:2], ParseQuestion)
			online := srv.Calls()

			// First run: the process dies while the job runs.
			ctx, cancel := context.WithCancel(context.Background())
			srv.OnPoll = func(string, int) { cancel() }
			tc1 := newTeacher(t, cfg, store, nil)
			rep1, err := tc1.Batch(ctx, "diagnose/shard-0", reqs)
			if !errors.Is(err, context.Canceled) || rep1.ID == "" || rep1.Items != 28 || rep1.Cached != 2 {
				t.Fatalf("first run: %+v, %v", rep1, err)
			}
			srv.OnPoll = nil

			// Restart: the same job is polled, not a new one created.
			tc2 := newTeacher(t, cfg, store, nil)
			rep2, err := tc2.Batch(context.Background(), "diagnose/shard-0", reqs)
			if err != nil {
				t.Fatal(err)
			}
			if !rep2.Resumed || rep2.ID != rep1.ID || srv.Batches() != 1 {
				t.Fatalf("restart: %+v, %d jobs; want the recorded job %s resumed", rep2, srv.Batches(), rep1.ID)
			}
			if rep2.Answered != 26 || rep2.Failed != 2 || srv.Calls() != online {
				t.Fatalf("restart: %+v, online calls %d", rep2, srv.Calls()-online)
			}
			// Another restart before the online pass: still the same job, no
			// new batch for the 2 leftovers.
			rep3, err := newTeacher(t, cfg, store, nil).Batch(context.Background(), "diagnose/shard-0", reqs)
			if err != nil || !rep3.Resumed || rep3.ID != rep1.ID || rep3.Failed != 2 || srv.Batches() != 1 {
				t.Fatalf("second restart: %+v, %v, %d jobs", rep3, err, srv.Batches())
			}
			// The online pass answers everything; only the 2 failed items cost
			// a call (Run finds the recorded job done and its replies cached).
			res := Run(context.Background(), tc2, "diagnose/shard-0", reqs, ParseQuestion)
			for i, r := range res {
				if r.Err != nil || r.Value != "q"+strconv.Itoa(i) {
					t.Fatalf("item %d: %+v", i, r)
				}
			}
			if srv.Calls()-online != 2 {
				t.Fatalf("online pass made %d calls, want 2", srv.Calls()-online)
			}
			st := tc2.Stats()
			if st.CacheHits != 28 || st.CacheMisses != 2 || st.BatchItems != 26 || st.BatchFailed != 2 {
				t.Fatalf("stats %+v", st)
			}
			// A third run finds everything cached and creates no job.
			rep4, err := newTeacher(t, cfg, store, nil).Batch(context.Background(), "diagnose/shard-0", reqs)
			if err != nil || rep4.ID != "" || rep4.Cached != 30 || srv.Batches() != 1 {
				t.Fatalf("last run %+v, %v", rep4, err)
			}
		})
	}
}

func TestBatchBudget(t *testing.T) {
	srv, cfg := fake(t, ProviderOpenAI)
	cfg.Batch.Enabled = true
	cfg.Budget.Tokens = 500
	tc := newTeacher(t, cfg, localStore(t), nil)
	_, err := tc.Batch(context.Background(), "big", requests(10, 100))
	if !errors.Is(err, ErrBudget) || srv.Batches() != 0 {
		t.Fatalf("err %v, %d jobs", err, srv.Batches())
	}
}

// TestBatchUnsupported: batch mode with the Gemini API (which has none) is
// refused when the teacher is built, before any stage runs.
func TestBatchUnsupported(t *testing.T) {
	_, cfg := fake(t, ProviderGemini)
	cfg.Batch.Enabled = true
	_, err := New(context.Background(), cfg, localStore(t), nil)
	if err == nil || !strings.Contains(err.Error(), "teacher.batch.enabled") || !strings.Contains(err.Error(), "vertex") {
		t.Fatalf("err %v", err)
	}
}

// A crash after the provider created the job and before its record was
// stored: the restart finds the job by its tag (paging through OpenAI's
// list; Vertex filters by display name) and adopts it instead of paying for a second one.
func TestBatchAdoptsUnrecordedJob(t *testing.T) {
	for _, p := range []string{ProviderOpenAI, ProviderVertex} {
		t.Run(p, func(t *testing.T) {
			srv, cfg, store := batchFake(t, p)
			srv.ListPage = 1 // one job a page: finding the OpenAI job takes paging
			var reqs, others []*Request
			for i := range 30 {
				reqs = append(reqs, userReq("q"+strconv.Itoa(i), 0))
				others = append(others, userReq("other"+strconv.Itoa(i), 0))
			}
			ctx := context.Background()
			// runUntilPoll creates a job and dies at its first status check.
			runUntilPoll := func(name string, reqs []*Request) BatchReport {
				t.Helper()
				cctx, cancel := context.WithCancel(ctx)
				defer cancel()
				srv.OnPoll = func(string, int) { cancel() }
				defer func() { srv.OnPoll = nil }()
				rep, err := newTeacher(t, cfg, store, nil).Batch(cctx, name, reqs)
				if !errors.Is(err, context.Canceled) || rep.ID == "" {
					t.Fatalf("%s: %+v, %v", name, rep, err)
				}
				return rep
			}
			rep1 := runUntilPoll("diagnose/shard-0", reqs)
			// The crash: the job exists, its record does not.
			var records []string
			store.List(ctx, CachePrefix+"/batches/", func(a storage.Attrs) error {
				if strings.HasSuffix(a.Key, ".json") {
					records = append(records, a.Key)
				}
				return nil
			})
			if len(records) != 1 {
				t.Fatalf("batch records %v, want 1", records)
			}
			if err := store.Delete(ctx, records[0]); err != nil {
				t.Fatal(err)
			}
			// A later, unrelated job lists ahead of it.
			if other := runUntilPoll("diagnose/shard-1", others); other.ID == rep1.ID {
				t.Fatalf("other work got job %s", other.ID)
			}

			rep2, err := newTeacher(t, cfg, store, nil).Batch(ctx, "diagnose/shard-0", reqs)
			if err != nil {
				t.Fatal(err)
			}
			if !rep2.Resumed || rep2.ID != rep1.ID || rep2.Answered != 30 || srv.Batches() != 2 {
				t.Fatalf("restart: %+v, %d jobs; want job %s adopted and no new one", rep2, srv.Batches(), rep1.ID)
			}
			if _, err := store.Stat(ctx, records[0]); err != nil {
				t.Fatalf("adopted job not recorded: %v", err)
			}
		})
	}
}
