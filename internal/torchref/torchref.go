// Package torchref finds the PyTorch reference the tests compare against:
// Debian's /usr/bin/python3 with python3-torch (the machine's default
// python3 may be another interpreter without torch).
package torchref

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Interpreter is Debian's Python, the one python3-torch installs into.
const Interpreter = "/usr/bin/python3"

// Python returns the interpreter after checking that it imports torch. When
// it does not, the test is skipped, or fails under STATJOB_TEST_STRICT=1
// (what `make test` sets), so CI never passes by skipping.
func Python(t testing.TB) string {
	t.Helper()
	if err := exec.Command(Interpreter, "-c", "import torch").Run(); err != nil {
		if os.Getenv("STATJOB_TEST_STRICT") == "1" {
			t.Fatalf("%s with torch is required (scripts/test-deps.sh installs python3-torch): %v", Interpreter, err)
		}
		t.Skipf("%s with torch not available (apt-get install python3-torch): %v", Interpreter, err)
	}
	return Interpreter
}

// RunScript runs a reference script (path relative to the test's package)
// as `script [dir] in.json out.json` with the torch interpreter: in is
// written to in.json as JSON, and out.json is decoded into out.
func RunScript(t testing.TB, script, dir string, in, out any) {
	t.Helper()
	tmp := t.TempDir()
	inPath, outPath := filepath.Join(tmp, "in.json"), filepath.Join(tmp, "out.json")
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{script}
	if dir != "" {
		args = append(args, dir)
	}
	if b, err := exec.Command(Interpreter, append(args, inPath, outPath)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, b)
	}
	if data, err = os.ReadFile(outPath); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
}
