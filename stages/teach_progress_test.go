package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage/storagetest"
)

// syncBuffer is a log sink several goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// A teacher stage's progress reaches the job's log: done/total teacher
// items per fan-out (diagnose asks one per subject), ending at total.
func TestTeachProgressInTheLog(t *testing.T) {
	srv := diagnoseFake(t)
	st := storagetest.Local(t)
	spec := teachSpec(t, srv, "diagnose.max_failed=0.2")
	g, err := job.NewGraph(NewSkills(), difficultyFixed(diagnoseRows), NewDiagnose())
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	if _, err := job.Run(context.Background(), st, spec, g, job.Options{RunID: "r1", Reporter: job.NewReporter(&logs, false)}); err != nil {
		t.Fatal(err)
	}
	last := map[string][2]float64{} // unit → last (done, total)
	for _, line := range strings.Split(logs.b.String(), "\n") {
		var l struct {
			Message, Stage, Unit string
			Done, Total          float64
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Message != "progress" || l.Stage != "diagnose" {
			continue
		}
		last[l.Unit] = [2]float64{l.Done, l.Total}
	}
	var got []string
	for unit, dt := range last {
		if dt[0] != dt[1] {
			t.Errorf("%s ended at %v of %v", unit, dt[0], dt[1])
		}
		got = append(got, unit)
	}
	sort.Strings(got)
	want := []string{"teacher items (diagnose/algebra)", "teacher items (diagnose/geometry)", "teacher items (diagnose/number_theory)"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("progress reports %q, want %q\nlog:\n%s", got, want, logs.b.String())
	}
	if last[want[0]] != [2]float64{4, 4} {
		t.Errorf("algebra: %v, want 4 of 4", last[want[0]])
	}
}
