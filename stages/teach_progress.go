package stages

import (
	"sync"

	"github.com/statjob/statjob/job"
)

// teachProgress shows a stage's teacher fan-outs through the job's progress
// reporting (a bar on a terminal, a log line now and then in batch): one
// report per fan-out (teacher.Run's name, e.g. "diagnose/algebra"), done of
// total teacher items. teacher.Options.Progress calls report from the
// fan-out's goroutines.
type teachProgress struct {
	env *job.Env

	mu   sync.Mutex
	bars map[string]*teachBar // the fan-outs under way, by name
}

type teachBar struct {
	p    *job.Progress
	done int
}

func newTeachProgress(env *job.Env) *teachProgress {
	return &teachProgress{env: env, bars: map[string]*teachBar{}}
}

// report counts one finished item of fan-out name of total items. A
// fan-out's bar ends with its last item, so a later fan-out of the same
// name starts a new one.
func (t *teachProgress) report(name string, _, total int) {
	t.mu.Lock()
	b := t.bars[name]
	if b == nil {
		unit := "teacher items"
		if name != "" {
			unit += " (" + name + ")"
		}
		b = &teachBar{p: t.env.Progress(unit, int64(total))}
		t.bars[name] = b
	}
	b.done++
	if b.done >= total {
		delete(t.bars, name)
	}
	t.mu.Unlock()
	b.p.Add(1)
}
