package backend

import (
	"errors"
	"os"
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

func TestXLAOptions(t *testing.T) {
	for _, c := range []struct {
		plugin, gomlx, flags, tf32 string
	}{
		{"/opt/p.so", "/opt/p.so", "", ""},
		{"/opt/p.so,deterministic", "/opt/p.so", "--xla_gpu_deterministic_ops=true", ""},
		{"cuda,tf32,full-f32,shared_buffers", "cuda,tf32,shared_buffers", "--xla_gpu_enable_triton_gemm=false", "0"},
		{"/opt/p.so,deterministic,,full-f32", "/opt/p.so",
			"--xla_gpu_deterministic_ops=true --xla_gpu_enable_triton_gemm=false", "0"},
	} {
		gomlx, flags, env, err := xlaSettings(c.plugin)
		if err != nil || gomlx != c.gomlx || strings.Join(flags, " ") != c.flags || env["NVIDIA_TF32_OVERRIDE"] != c.tf32 {
			t.Errorf("xlaSettings(%q) = %q, %q, %v, %v; want %q, %q, TF32 override %q",
				c.plugin, gomlx, flags, env, err, c.gomlx, c.flags, c.tf32)
		}
	}
	// A misspelt option is an error that names it, before anything is set.
	t.Setenv("XLA_FLAGS", "")
	_, err := New("xla:/nonexistent/xla_cuda_plugin.so,determinstic")
	if err == nil || !strings.Contains(err.Error(), `unknown option "determinstic"`) || os.Getenv("XLA_FLAGS") != "" {
		t.Errorf("misspelt option: %v (XLA_FLAGS %q)", err, os.Getenv("XLA_FLAGS"))
	}
}

func TestAddXLAFlag(t *testing.T) {
	t.Setenv("XLA_FLAGS", "--xla_gpu_cuda_data_dir=/usr/local/cuda --xla_gpu_deterministic_ops=false")
	addXLAFlag("--xla_gpu_deterministic_ops=true") // the user's own setting wins
	addXLAFlag("--xla_gpu_enable_triton_gemm=false")
	want := "--xla_gpu_cuda_data_dir=/usr/local/cuda --xla_gpu_deterministic_ops=false --xla_gpu_enable_triton_gemm=false"
	if got := os.Getenv("XLA_FLAGS"); got != want {
		t.Errorf("XLA_FLAGS = %q, want %q", got, want)
	}
}

func TestDeterministic(t *testing.T) {
	t.Setenv(EnvVar, "")
	for spec, want := range map[string]bool{
		"": true, "go:parallelism=2": true, "xla:/opt/p.so": false,
		"xla:/opt/p.so,full-f32, deterministic": true, "xla:cuda,tf32": false,
	} {
		if got := Deterministic(spec); got != want {
			t.Errorf("Deterministic(%q) = %v, want %v", spec, got, want)
		}
	}
	if !HasOption("xla:cuda, full-f32,tf32", "full-f32") || HasOption("xla:cuda,tf32", "full-f32") || HasOption("go:full-f32", "full-f32") {
		t.Errorf("HasOption: full-f32 found where it is not, or missed where it is")
	}
}

func TestHint(t *testing.T) {
	busy := errors.New("while creating plugin /p/xla_cuda_plugin.so for backend \"xla\": PJRT error (code=13): no supported devices found for platform CUDA")
	if h := hint(busy); !strings.Contains(h, "another process using the GPU") {
		t.Errorf("hint for a GPU held elsewhere: %q", h)
	}
	if h := hint(errors.New("plugin not found")); h != "" {
		t.Errorf("hint for another error: %q", h)
	}
}
