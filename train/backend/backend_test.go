package backend

import (
	"errors"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
)

func TestResolve(t *testing.T) {
	t.Setenv(EnvVar, "")
	for spec, want := range map[string]string{
		"":                     Default,
		"go":                   "go:parallelism=-1",
		"go:parallelism=4":     "go:parallelism=4",
		"xla:cuda":             "xla:cuda",
		"xla:/opt/x/plugin.so": "xla:/opt/x/plugin.so",
	} {
		if got := Resolve(spec); got != want {
			t.Errorf("Resolve(%q) = %q, want %q", spec, got, want)
		}
	}
	t.Setenv(EnvVar, "go")
	if got := Resolve(""); got != "go:parallelism=-1" {
		t.Errorf("Resolve with GOMLX_BACKEND=go = %q, want parallelism=-1 added", got)
	}
}

func TestDefaultComputes(t *testing.T) {
	t.Setenv(EnvVar, "")
	b, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Finalize()
	out := graph.MustExecOnce(b, func(x *graph.Node) *graph.Node { return graph.MulScalar(x, 2) }, []float32{1, 2})
	if got := out.Value().([]float32); got[0] != 2 || got[1] != 4 {
		t.Fatalf("2*x = %v", got)
	}
}

func TestMissingPlugin(t *testing.T) {
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", t.TempDir())
	for _, spec := range []string{"xla:/nonexistent/xla_cuda_plugin.so", "xla:cuda", "xla"} {
		_, err := New(spec)
		if !errors.Is(err, ErrNoPlugin) {
			t.Fatalf("New(%q) error = %v, want ErrNoPlugin", spec, err)
		}
		if !strings.Contains(err.Error(), "GOMLX_BACKEND=xla:/abs/path") {
			t.Errorf("New(%q) error does not say how to provide a plugin: %v", spec, err)
		}
	}
}
