package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/stages"
	"github.com/statjob/statjob/storage/storagetest"
)

// TestCheck: statjob check passes on the demo's world, student and teacher,
// with the runs kept on the GCS and S3 emulators; and names the broken part
// when the student, the teacher or the storage is wrong.
func TestCheck(t *testing.T) {
	d, err := startDemo(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	spec, err := d.spec.YAML()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(file, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, sets ...string) (string, error) {
		t.Helper()
		args := []string{"check", "--config", file}
		for _, s := range sets {
			args = append(args, "--set", s)
		}
		return statjob(t, args...)
	}
	line := func(out, status, name, detail string) bool {
		return regexp.MustCompile(`(?m)^` + status + ` +` + name + ` +.*` + detail).MatchString(out)
	}

	gcs, s3 := storagetest.FakeGCS(t), storagetest.GoFakeS3(t)
	for _, c := range []struct {
		name string
		sets []string
	}{
		{"local", nil},
		{"gcs", []string{"storage.root=" + gcs.Root, "storage.gcs.endpoint=" + gcs.GCS.Endpoint}},
		{"s3", []string{"storage.root=" + s3.Root, "storage.s3.endpoint=" + s3.S3.Endpoint}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := check(t, c.sets...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, want := range [][2]string{
				{"storage", "write, conditional write, read, list, delete"},
				{"backend", ""},
				{"student", `qwen2, \d+ layers, .*; weights 3\d\d KiB in float32; chat template renders`},
				{"generation", `probe: KV cache [\d.]+ [KMG]?i?B \(batch \d+ × \d+ tokens, float32; .*\), evaluate: (the same|KV cache)`},
				{"data", `math: \d+ problems`},
				{"teacher", "openai skills-world-oracle answered"},
			} {
				if !line(out, "ok", want[0], want[1]) {
					t.Errorf("no ok line for %s (%s):\n%s", want[0], want[1], out)
				}
			}
			if strings.Contains(out, "FAIL") {
				t.Errorf("a check failed:\n%s", out)
			}
		})
	}

	t.Run("broken", func(t *testing.T) {
		// A student whose config disagrees with its weights, a teacher
		// that is not there: each is named, nothing else fails, and the
		// command fails.
		student := t.TempDir()
		for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} {
			b, err := os.ReadFile(filepath.Join(d.student, f))
			if err != nil {
				t.Fatal(err)
			}
			if f == "config.json" {
				b = regexp.MustCompile(`"num_hidden_layers": *\d+`).ReplaceAll(b, []byte(`"num_hidden_layers": 7`))
			}
			if err := os.WriteFile(filepath.Join(student, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, err := check(t, "student.model="+student, "teacher.base_url=http://127.0.0.1:1/v1", "teacher.retry.attempts=1")
		if err == nil || !strings.Contains(err.Error(), "2 of") {
			t.Errorf("err = %v, want 2 failed checks\n%s", err, out)
		}
		if !line(out, "FAIL", "student", `student.model: .*missing tensors \[model.layers.\d+`) {
			t.Errorf("the student's missing layers are not named:\n%s", out)
		}
		if !line(out, "FAIL", "teacher", "skills-world-oracle") || !line(out, "ok", "storage", "") {
			t.Errorf("want the teacher failed and the storage ok:\n%s", out)
		}
	})

	t.Run("json", func(t *testing.T) {
		out, err := statjob(t, "check", "--config", file, "--json", "--set", "student.model=/nonexistent", "--offline")
		if err == nil {
			t.Error("a failed check did not fail the command")
		}
		var rows []struct {
			Check, Detail, Error string
			OK                   bool
		}
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		failed := map[string]bool{}
		for _, r := range rows {
			if !r.OK {
				failed[r.Check] = r.Error != ""
			}
		}
		if len(failed) != 1 || !failed["student"] {
			t.Errorf("failed checks %v, want the student's with its error:\n%s", failed, out)
		}
	})

	t.Run("bfloat16", func(t *testing.T) {
		// The demo trains every weight: float32 then, bfloat16 to answer.
		out, err := check(t, "student.dtype=bfloat16")
		if err != nil || !line(out, "ok", "student", `weights 1\d\d KiB in bfloat16 when answering, 3\d\d KiB in float32 when trained`) {
			t.Errorf("%v\n%s", err, out)
		}
	})

	t.Run("offline", func(t *testing.T) {
		// No call (the teacher is not there), but a key that is not
		// set is seen, and a key that is set is never printed.
		out, err := statjob(t, "check", "--config", file, "--offline", "--set", "teacher.base_url=http://127.0.0.1:1/v1")
		if err != nil || !line(out, "ok", "teacher", `skills-world-oracle: no key needed; not called \(--offline\)`) {
			t.Errorf("--offline called the teacher, or failed: %v\n%s", err, out)
		}
		out, err = statjob(t, "check", "--config", file, "--offline", "--set", "teacher.api_key_env=STATJOB_CHECK_UNSET_KEY")
		if err == nil || !line(out, "FAIL", "teacher", `teacher.api_key_env: .*\$STATJOB_CHECK_UNSET_KEY is empty or unset`) {
			t.Errorf("an unset key passed --offline: %v\n%s", err, out)
		}
		t.Setenv("STATJOB_CHECK_KEY", "sk-check-secret-value")
		out, err = statjob(t, "check", "--config", file, "--offline", "--set", "teacher.api_key_env=STATJOB_CHECK_KEY")
		if err != nil || !line(out, "ok", "teacher", `key in \$STATJOB_CHECK_KEY; not called`) || strings.Contains(out, "sk-check") {
			t.Errorf("a set key: %v\n%s", err, out)
		}
	})
}

// TestFrozenSpecKeepsFingerprints: the spec as a run freezes it (run.json)
// and as statjob spec writes it give every stage the fingerprint of the spec
// they came from, so statjob resume takes up a finished run's stages and a
// saved spec reuses the stage cache.
func TestFrozenSpecKeepsFingerprints(t *testing.T) {
	d, err := startDemo(t.TempDir(), "", "pipeline.strategies=[stat-sel, embed-sel]", "pipeline.grpo=[stat-sel]")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fingerprints := func(spec *job.Spec) map[string]string {
		t.Helper()
		g, err := stages.Graph(spec)
		if err != nil {
			t.Fatal(err)
		}
		fps, err := g.Fingerprints(spec)
		if err != nil {
			t.Fatal(err)
		}
		return fps
	}
	want := fingerprints(d.spec)
	frozen, err := d.spec.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := d.spec.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string][]byte{"run.json": frozen, "statjob spec": saved} {
		spec := newSpec()
		if err := spec.Load(name, text); err != nil {
			t.Fatal(err)
		}
		got := fingerprints(spec)
		for stage, fp := range want {
			if got[stage] != fp {
				t.Errorf("%s: stage %s has fingerprint %.8s, the spec it came from %.8s", name, stage, got[stage], fp)
			}
		}
	}
}
