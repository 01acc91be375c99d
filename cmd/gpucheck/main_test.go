package main

import (
	"flag"
	"os"
	"os/exec"
	"testing"
)

// The GPU machine has no Go toolchain and little time, so a gpucheck that
// only fails there wastes the whole loan: run every check and timing here,
// on SimpleGo, at tiny sizes, with the PyTorch reference when it is
// installed (test-deps installs it).
func TestRunOnCPU(t *testing.T) {
	set := map[string]string{
		"backend": "go", "reference": "../../train/model/testdata/reference.py", "bench-tiny": "true",
		"train-batch": "2", "train-seq": "32", "steps": "1", "decode-batch": "4", "prompt": "16", "new": "8",
	}
	if exec.Command("/usr/bin/python3", "-c", "import torch").Run() == nil {
		set["python"] = "/usr/bin/python3"
	} else if os.Getenv("STATJOB_TEST_STRICT") != "" {
		t.Fatal("/usr/bin/python3 has no torch (scripts/test-deps.sh installs python3-torch)")
	}
	for k, v := range set {
		if err := flag.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := run(); err != nil {
		t.Fatal(err)
	}
}

// The scripts that run gpucheck and the SFT benchmark on the GPU machine
// must at least parse.
func TestScriptsParse(t *testing.T) {
	for _, s := range []string{"../../bench/gpu/run.sh", "../../bench/gpu/session.sh", "../../bench/sft/gpu.sh"} {
		if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", s, err, out)
		}
	}
}
