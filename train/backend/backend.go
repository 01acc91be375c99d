// Package backend picks the GoMLX backend statjob computes on.
//
// The spec is a GoMLX backend configuration string:
//
//	""                        SimpleGo on the CPU with go:parallelism=-1 (the default)
//	"go" or "go:…"            SimpleGo; parallelism=-1 is added unless set
//	"xla:cuda"                XLA with a CUDA PJRT plugin found on PJRT_PLUGIN_LIBRARY_PATH
//	"xla:/abs/path/plugin.so" XLA with that PJRT plugin file (e.g. jax's xla_cuda_plugin.so)
//
// An XLA spec may add options after the plugin, separated by commas
// ("xla:/abs/path/plugin.so,deterministic"):
//
//	deterministic  GPU kernels without atomics (--xla_gpu_deterministic_ops):
//	               the same inputs give bitwise the same results, so a job
//	               resumed from a checkpoint trains exactly as an
//	               uninterrupted one. Without it, the scatter-add of the
//	               embedding gradient sums in a varying order.
//	full-f32       float32 matrix products in full float32. XLA otherwise
//	               runs them in TF32 on NVIDIA GPUs since Ampere (10-bit
//	               mantissa; logits move by about 1e-2).
//	tf32, shared_buffers, noshared_buffers   GoMLX's own options.
//
// statjob's options set process-wide state that XLA reads once, when the
// first XLA backend starts: XLA_FLAGS (a flag already there wins) and
// NVIDIA_TF32_OVERRIDE. Any other option is an error.
//
// When the spec is empty, $GOMLX_BACKEND is used. SimpleGo's default
// bounded worker pool can deadlock in a parallel DotGeneral, hence
// parallelism=-1 (an unbounded pool of goroutines, run on GOMAXPROCS threads). The XLA backend never downloads a plugin: a missing
// plugin is an error (ErrNoPlugin) that says how to provide one.
package backend

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego" // registers "go"
	"github.com/gomlx/gomlx/backends/xla"        // registers "xla"
)

// EnvVar names the environment variable read when the spec is empty.
const EnvVar = backends.ConfigEnvVar // GOMLX_BACKEND

// Default is the CPU backend used when nothing is configured.
const Default = "go:parallelism=-1"

// ErrNoPlugin: the XLA backend was asked for but its PJRT plugin is not there.
var ErrNoPlugin = errors.New("PJRT plugin not found")

func init() {
	// Never fetch plugins from the network: a job must run with what its
	// image ships.
	xla.EnableAutoInstall(false)
}

// Resolve returns the backend configuration that New would use for spec.
func Resolve(spec string) string {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		spec = strings.TrimSpace(os.Getenv(EnvVar))
	}
	if spec == "" {
		return Default
	}
	name, opts, _ := strings.Cut(spec, ":")
	if name == "go" || name == "simplego" {
		if !strings.Contains(opts, "parallelism") {
			if opts == "" {
				opts = "parallelism=-1"
			} else {
				opts += ",parallelism=-1"
			}
		}
		return "go:" + opts
	}
	return spec
}

// New creates the backend for spec (see the package doc).
func New(spec string) (backends.Backend, error) {
	cfg := Resolve(spec)
	name, plugin, _ := strings.Cut(cfg, ":")
	switch name {
	case "xla", "stablehlo", "hlo", "shlo":
		gomlx, flags, env, err := xlaSettings(plugin)
		if err != nil {
			return nil, err
		}
		if err := checkPlugin(plugin); err != nil {
			return nil, err
		}
		for k, v := range env {
			os.Setenv(k, v)
		}
		for _, f := range flags {
			addXLAFlag(f)
		}
		cfg = name + ":" + gomlx
	}
	b, err := backends.NewWithConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w%s", cfg, err, hint(err))
	}
	return b, nil
}

// hint explains the XLA errors whose cause is not in their text.
func hint(err error) string {
	if strings.Contains(err.Error(), "no supported devices found") {
		// Seen on an H200 when a second process started while the first
		// held its XLA client.
		return " (is another process using the GPU? XLA reserves most of a GPU's memory when it starts, " +
			"so one statjob process per GPU)"
	}
	return ""
}

// gomlxOptions are the XLA spec options GoMLX itself reads.
var gomlxOptions = []string{"tf32", "shared_buffers", "noshared_buffers"}

// splitOptions splits the plugin part of an XLA spec ("path,opt,…") into
// the plugin and its non-empty options.
func splitOptions(plugin string) (path string, opts []string) {
	parts := strings.Split(plugin, ",")
	for _, o := range parts[1:] {
		if o = strings.TrimSpace(o); o != "" {
			opts = append(opts, o)
		}
	}
	return parts[0], opts
}

// xlaSettings splits the plugin part of an XLA spec into what GoMLX reads
// (the plugin and GoMLX's options) and the XLA flags and environment
// statjob's options ask for (see the package doc).
func xlaSettings(plugin string) (gomlx string, flags []string, env map[string]string, err error) {
	path, opts := splitOptions(plugin)
	kept := []string{path}
	env = map[string]string{}
	for _, o := range opts {
		switch {
		case o == "deterministic":
			flags = append(flags, "--xla_gpu_deterministic_ops=true")
		case o == "full-f32":
			env["NVIDIA_TF32_OVERRIDE"] = "0"                           // cuBLAS and cuDNN
			flags = append(flags, "--xla_gpu_enable_triton_gemm=false") // XLA's own GEMM kernels take TF32 too
		case slices.Contains(gomlxOptions, o):
			kept = append(kept, o)
		default:
			return "", nil, nil, fmt.Errorf("backend xla:%s: unknown option %q (statjob's: deterministic, full-f32; GoMLX's: %s)",
				plugin, o, strings.Join(gomlxOptions, ", "))
		}
	}
	return strings.Join(kept, ","), flags, env, nil
}

// addXLAFlag appends flag ("--name=value") to $XLA_FLAGS unless the
// variable already sets that name.
func addXLAFlag(flag string) {
	name, _, _ := strings.Cut(flag, "=")
	cur := os.Getenv("XLA_FLAGS")
	for _, f := range strings.Fields(cur) {
		if n, _, _ := strings.Cut(f, "="); n == name {
			return
		}
	}
	os.Setenv("XLA_FLAGS", strings.TrimSpace(cur+" "+flag))
}

// HasOption reports whether the XLA spec names option after its plugin.
func HasOption(spec, option string) bool {
	name, plugin, _ := strings.Cut(Resolve(spec), ":")
	if name == "go" {
		return false
	}
	_, opts := splitOptions(plugin)
	return slices.Contains(opts, option)
}

// Deterministic reports whether the backend of spec gives bitwise the same
// results for the same inputs: SimpleGo, or XLA with the deterministic option.
func Deterministic(spec string) bool {
	return strings.HasPrefix(Resolve(spec), "go:") || HasOption(spec, "deterministic")
}

const howToProvide = "provide one with GOMLX_BACKEND=xla:/abs/path/to/xla_cuda_plugin.so " +
	"(jax's CUDA plugin; find it with `find / -name xla_cuda_plugin.so`) or put " +
	"pjrt_c_api_<name>_plugin.so in a directory listed in PJRT_PLUGIN_LIBRARY_PATH; " +
	"plugins are never downloaded"

// checkPlugin fails early, with instructions, when the plugin named in an
// XLA spec cannot be found.
func checkPlugin(plugin string) error {
	plugin, _ = splitOptions(plugin)
	if plugin == "" {
		return fmt.Errorf("backend xla: %w: name a plugin (xla:cuda or xla:/abs/path/plugin.so); %s", ErrNoPlugin, howToProvide)
	}
	if filepath.IsAbs(plugin) {
		if _, err := os.Stat(plugin); err != nil {
			return fmt.Errorf("backend xla:%s: %w (%v); %s", plugin, ErrNoPlugin, err, howToProvide)
		}
		return nil
	}
	for _, p := range xla.GetAvailablePlugins() {
		if p == plugin {
			return nil
		}
	}
	return fmt.Errorf("backend xla:%s: %w (available: %q); %s", plugin, ErrNoPlugin, xla.GetAvailablePlugins(), howToProvide)
}
