package teacher

import (
	"context"
	"strconv"
	"testing"

	"github.com/statjob/statjob/storage/storagetest"
	"github.com/statjob/statjob/teacher/teachertest"
)

// The cache keeps its promise on every backend a run may use: a second
// process finds every reply, and racing writers of the same reply agree.
func TestCacheOnEveryBackend(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			srv, cfg := fake(t, ProviderGemini)
			srv.Answer = func(c teachertest.Call) teachertest.Answer {
				return teachertest.Answer{Text: "<question>" + c.Last() + "</question>"}
			}
			var reqs []*Request
			for i := range 20 {
				reqs = append(reqs, userReq("q"+strconv.Itoa(i%10), i/10)) // 10 questions × 2 samples
			}
			res1 := Map(context.Background(), newTeacher(t, cfg, be.Store, nil), reqs, ParseQuestion)
			tc2 := newTeacher(t, cfg, be.Store, nil)
			res2 := Map(context.Background(), tc2, reqs, ParseQuestion)
			for i := range reqs {
				if res1[i].Err != nil || res2[i].Value != res1[i].Value || !res2[i].Reply.Cached {
					t.Fatalf("item %d: %+v then %+v", i, res1[i], res2[i])
				}
			}
			if srv.Calls() != 20 || tc2.Stats().CacheHits != 20 {
				t.Fatalf("%d calls, %d hits on the rerun", srv.Calls(), tc2.Stats().CacheHits)
			}
			// Two teachers writing the same reply at once: one write wins,
			// the other is not an error.
			c := newTeacher(t, cfg, be.Store, nil).cache
			fresh := userReq("fresh", 0)
			k := CacheKey(cfg.Provider, cfg.Model, fresh)
			errs := make(chan error, 4)
			for i := range 4 {
				go func() {
					errs <- c.put(context.Background(), k, fresh, &Reply{Text: "writer " + strconv.Itoa(i)}, "online")
				}()
			}
			for range 4 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if r, err := c.lookup(context.Background(), k); err != nil || r.Reply.Text[:7] != "writer " {
				t.Fatalf("after racing writes: %v, %v", r, err)
			}
		})
	}
}
