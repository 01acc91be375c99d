package job

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// VertexJobEnv carries a Vertex AI custom job's own name to its replicas
// (statjob submit --cloud vertex sets it): Vertex gives a replica its
// place in CLUSTER_SPEC but no job id, and a task's name needs both.
const VertexJobEnv = "STATJOB_VERTEX_JOB"

// vertexTask names this process's Vertex AI replica, "<job>/<replica>",
// or "" outside a Vertex custom job. Vertex restarts a failed replica in
// place, one attempt at a time, so the name is stable across attempts.
func vertexTask() string {
	name, spec := os.Getenv(VertexJobEnv), os.Getenv("CLUSTER_SPEC")
	if name == "" || spec == "" {
		return ""
	}
	i, err := ClusterSpecReplica(spec)
	if err != nil {
		return "" // the shard options report the bad CLUSTER_SPEC
	}
	return name + "/" + strconv.Itoa(i)
}

// ClusterSpecReplica is the place of this replica of a Vertex AI custom
// job among all replicas, from the CLUSTER_SPEC variable Vertex sets:
// {"cluster": {"workerpool0": [...], "workerpool1": [...]}, "task":
// {"type": "workerpool1", "index": 2}} is replica 1 + 2 = 3.
func ClusterSpecReplica(spec string) (int, error) {
	var cs struct {
		Cluster map[string][]string
		Task    struct {
			Type  string
			Index *int
		}
	}
	if err := json.Unmarshal([]byte(spec), &cs); err != nil {
		return 0, fmt.Errorf("CLUSTER_SPEC: %w", err)
	}
	pool, err := strconv.Atoi(strings.TrimPrefix(cs.Task.Type, "workerpool"))
	if err != nil || !strings.HasPrefix(cs.Task.Type, "workerpool") || cs.Task.Index == nil ||
		*cs.Task.Index < 0 || *cs.Task.Index >= len(cs.Cluster[cs.Task.Type]) {
		return 0, fmt.Errorf("CLUSTER_SPEC: task %q index %v is not one of its cluster's replicas", cs.Task.Type, cs.Task.Index)
	}
	i := *cs.Task.Index
	for p := 0; p < pool; p++ {
		i += len(cs.Cluster["workerpool"+strconv.Itoa(p)])
	}
	return i, nil
}
