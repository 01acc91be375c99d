package job

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestSpecBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		sets []string
		want []string // all must appear in the error
	}{
		{"unknown section", "gen:\n  count: 3\ntrian:\n  lr: 1\n", nil,
			[]string{`spec.yaml:3: trian: unknown section "trian" (sections: storage, job, gen, scale)`}},
		{"unknown key", "gen:\n  count: 3\n  cuont: 4\n", nil,
			[]string{`spec.yaml:3: gen.cuont: unknown key "cuont" (not a field of job.genConfig)`}},
		{"wrong type", "gen:\n  count: many\n", nil,
			[]string{"spec.yaml:2: gen.count: cannot unmarshal !!str `many` into int"}},
		{"wrong type duration", "job:\n  poll: soon\n", nil,
			[]string{"spec.yaml:2: job.poll: cannot unmarshal !!str `soon` into time.Duration"}},
		{"two errors at once", "gen:\n  count: x\nscale:\n  c: 1\n", nil,
			[]string{"spec.yaml:2: gen.count:", `spec.yaml:4: scale.c: unknown key "c"`}},
		{"duplicate key", "gen:\n  count: 3\n  count: 4\n", nil,
			[]string{"spec.yaml", `spec.yaml:3: gen.count: mapping key "count" already defined at line 2`}},
		{"missing required field", "gen:\n  seed: 3\n", nil,
			[]string{"spec: gen: count is required"}},
		{"bad URI", "storage:\n  root: ftp://bucket/x\ngen:\n  count: 3\n", nil,
			[]string{"spec: storage.root", "ftp"}},
		{"bad job field", "job:\n  heartbeat: 10m\ngen:\n  count: 3\n", nil,
			[]string{"spec: job: heartbeat must be positive and shorter than lease_ttl"}},
		{"not YAML", "gen: [\n", nil, []string{"spec.yaml: yaml: line"}},
		{"second document", "gen:\n  count: 3\n---\ngen:\n  count: 4\n", nil,
			[]string{"spec.yaml: line 3: a second YAML document"}},
		{"set unknown section", "gen:\n  count: 3\n", []string{"trian.lr=3"},
			[]string{`--set trian.lr: unknown section "trian"`}},
		{"set unknown key", "gen:\n  count: 3\n", []string{"gen.cuont=3"},
			[]string{`--set gen.cuont=3: unknown key "cuont"`}},
		{"set wrong type", "gen:\n  count: 3\n", []string{"gen.count=x"},
			[]string{"--set gen.count=x: cannot unmarshal !!str `x` into int"}},
		{"set without =", "gen:\n  count: 3\n", []string{"gen.count"},
			[]string{`--set "gen.count": want key=value`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, _, err := testSpec(nil)
			if err != nil {
				t.Fatal(err)
			}
			err = spec.Load("spec.yaml", []byte(tc.yaml))
			for _, s := range tc.sets {
				if err == nil {
					err = spec.Set(s)
				}
			}
			if err == nil {
				err = spec.Validate()
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestSpecLayers(t *testing.T) {
	spec, _, err := testSpec(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Defaults, then the file (an empty section keeps its defaults), then
	// --set; a list and a nested field are set like any other.
	if err := spec.Load("spec.yaml", []byte("gen:\n  seed: 5\nscale:\njob:\n  poll: 1s\n")); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"scale.b=7", "storage.root=gs://bucket/pre", "storage.s3.path_style=true", "job.grace=1m"} {
		if err := spec.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	gen := spec.Section("gen").(*genConfig)
	sc := spec.Section("scale").(*scaleConfig)
	if gen.Count != 0 || gen.Seed != 5 || sc.A != 2 || sc.B != 7 {
		t.Errorf("gen %+v scale %+v", gen, sc)
	}
	if spec.Job().Poll != time.Second || spec.Job().Grace != time.Minute || spec.Job().LeaseTTL != 5*time.Minute {
		t.Errorf("job %+v", spec.Job())
	}
	if spec.Storage().Root != "gs://bucket/pre" || !spec.Storage().S3.PathStyle {
		t.Errorf("storage %+v", spec.Storage())
	}

	// The canonical form round-trips: a spec loaded from it (as resume
	// does from run.json) is the same spec, and fingerprints agree.
	frozen, err := spec.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	again, g2, _ := testSpec(nil)
	if err := again.Load("run.json", frozen); err != nil {
		t.Fatal(err)
	}
	frozen2, _ := again.Canonical()
	if string(frozen) != string(frozen2) {
		t.Errorf("canonical spec does not round-trip:\n%s\n%s", frozen, frozen2)
	}
	fps2, err := g2.Fingerprints(again)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]any
	if err := json.Unmarshal(frozen, &m); err != nil {
		t.Fatal(err)
	}
	if m["job"]["poll"] != "1s" || m["scale"]["b"] != float64(7) {
		t.Errorf("frozen spec: %s", frozen)
	}
	// A changed field changes the fingerprints of exactly the stages that
	// read it and their downstream.
	if err := again.Set("scale.a=9"); err != nil {
		t.Fatal(err)
	}
	fps3, _ := g2.Fingerprints(again)
	for st, changed := range map[string]bool{"gen": false, "scale/a": true, "scale/b": false, "sum": true} {
		if (fps2[st] != fps3[st]) != changed {
			t.Errorf("stage %s: fingerprint changed = %v, want %v", st, fps2[st] != fps3[st], changed)
		}
	}
}
