// Package torchref finds the PyTorch reference the tests compare against:
// Debian's /usr/bin/python3 with python3-torch (the machine's default
// python3 may be another interpreter without torch).
package torchref

import (
	"os"
	"os/exec"
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
