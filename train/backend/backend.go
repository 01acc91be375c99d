// Package backend picks the GoMLX backend statjob computes on.
//
// The spec is a GoMLX backend configuration string:
//
//	""                        SimpleGo on the CPU with go:parallelism=-1 (the default)
//	"go" or "go:…"            SimpleGo; parallelism=-1 is added unless set
//	"xla:cuda"                XLA with a CUDA PJRT plugin found on PJRT_PLUGIN_LIBRARY_PATH
//	"xla:/abs/path/plugin.so" XLA with that PJRT plugin file (e.g. jax's xla_cuda_plugin.so)
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
		if err := checkPlugin(plugin); err != nil {
			return nil, err
		}
	}
	b, err := backends.NewWithConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", cfg, err)
	}
	return b, nil
}

const howToProvide = "provide one with GOMLX_BACKEND=xla:/abs/path/to/xla_cuda_plugin.so " +
	"(jax's CUDA plugin; find it with `find / -name xla_cuda_plugin.so`) or put " +
	"pjrt_c_api_<name>_plugin.so in a directory listed in PJRT_PLUGIN_LIBRARY_PATH; " +
	"plugins are never downloaded"

// checkPlugin fails early, with instructions, when the plugin named in an
// XLA spec cannot be found.
func checkPlugin(plugin string) error {
	plugin, _, _ = strings.Cut(plugin, ",")
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
