package job

import (
	"strconv"
	"testing"
)

// TestBatchTask: each batch service's variables name the task, the same
// for every attempt of it and different between tasks.
func TestBatchTask(t *testing.T) {
	vars := []string{"BATCH_JOB_UID", "BATCH_TASK_INDEX", "AWS_BATCH_JOB_ID", VertexJobEnv, "CLUSTER_SPEC"}
	spec := func(pool string, i int) string {
		return `{"cluster": {"workerpool0": ["a:1"], "workerpool1": ["b:1", "c:1"]}, "task": {"type": "` +
			pool + `", "index": ` + strconv.Itoa(i) + `}}`
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"outside batch", nil, ""},
		{"cloud batch", map[string]string{"BATCH_JOB_UID": "j-1", "BATCH_TASK_INDEX": "3"}, "j-1/3"},
		{"aws batch array child", map[string]string{"AWS_BATCH_JOB_ID": "abc:2"}, "abc:2"},
		{"vertex primary", map[string]string{VertexJobEnv: "statjob-x", "CLUSTER_SPEC": spec("workerpool0", 0)}, "statjob-x/0"},
		{"vertex worker", map[string]string{VertexJobEnv: "statjob-x", "CLUSTER_SPEC": spec("workerpool1", 1)}, "statjob-x/2"},
		{"vertex without the job's name", map[string]string{"CLUSTER_SPEC": spec("workerpool1", 1)}, ""},
		{"vertex, bad CLUSTER_SPEC", map[string]string{VertexJobEnv: "statjob-x", "CLUSTER_SPEC": "{"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, v := range vars {
				t.Setenv(v, c.env[v])
			}
			if got := BatchTask(); got != c.want {
				t.Errorf("BatchTask() = %q, want %q", got, c.want)
			}
		})
	}
}
