package teacher

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/teacher/teachertest"
)

// TestMain doubles as the fake endpoint of the benchmark: with
// STATJOB_BENCH_SERVE=<latency> the test binary serves a fake OpenAI API
// and prints its URL, so the benchmark's client runs in a process of its own
// and its CPU and memory are measured alone.
func TestMain(m *testing.M) {
	if lat := os.Getenv("STATJOB_BENCH_SERVE"); lat != "" {
		d, err := time.ParseDuration(lat)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		s := teachertest.NewOpenAI(nil)
		s.Latency = d
		gcs, err := fakestorage.NewServerWithOptions(fakestorage.Options{
			Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1", Writer: io.Discard})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: benchBucket})
		fmt.Println(s.URL)
		fmt.Println(gcs.URL())
		bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
		s.Close()
		gcs.Stop()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const benchBucket = "statjob-bench"

// startBenchServer starts the child process serving the fake model and a
// fake-gcs-server, and returns their URLs.
func startBenchServer(b *testing.B, latency time.Duration) (llm, gcs string) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "STATJOB_BENCH_SERVE="+latency.String())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	r := bufio.NewReader(stdout)
	llm, err := r.ReadString('\n')
	if err == nil {
		gcs, err = r.ReadString('\n')
	}
	if err != nil {
		b.Fatal(err)
	}
	return strings.TrimSpace(llm), strings.TrimSpace(gcs)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakHeap samples the heap (objects, live and not yet swept) until stop
// is closed. runtime/metrics reads it without stopping the world, which
// runtime.ReadMemStats would do at every sample.
func peakHeap(stop <-chan struct{}) func() uint64 {
	var mu sync.Mutex
	var peak uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			mu.Lock()
			peak = max(peak, sample[0].Value.Uint64())
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { <-done; mu.Lock(); defer mu.Unlock(); return peak }
}

// BenchmarkFanout: 10,000 calls at concurrency 64 against a server answering
// in 50 ms (ceiling 64 / 0.05 s = 1,280 calls/s), cache off, on (cold: every
// reply written) and on (warm: every reply read back), the cache in a local
// folder and in fake-gcs-server (run by the child process too).
// STATJOB_BENCH_CALLS changes the number of calls; the GCS runs make
// STATJOB_BENCH_GCS_CALLS (default 2,000), since the emulator slows down as
// its bucket fills (28 calls/s at 10,000 objects on the 2-core box).
func BenchmarkFanout(b *testing.B) {
	const latency, conc = 50 * time.Millisecond, 64
	calls := 10000
	if n, err := strconv.Atoi(os.Getenv("STATJOB_BENCH_CALLS")); err == nil {
		calls = n
	}
	url, gcsURL := startBenchServer(b, latency)
	b.Setenv("STATJOB_TEST_TEACHER_KEY", "bench")
	ceiling := float64(conc) / latency.Seconds()

	var store storage.Store
	stores := 0
	openStore := func(kind string) storage.Store {
		c := storage.Config{Root: b.TempDir()}
		if kind == "gcs" {
			stores++
			c = storage.Config{Root: fmt.Sprintf("gs://%s/run%d", benchBucket, stores)}
			c.GCS.Endpoint = gcsURL
		}
		s, err := c.Open(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	gcsCalls := 2000
	if n, err := strconv.Atoi(os.Getenv("STATJOB_BENCH_GCS_CALLS")); err == nil {
		gcsCalls = n
	}
	run := func(b *testing.B, prefix string, calls int) {
		cfg := testConfig(ProviderOpenAI, url+"/v1")
		cfg.Limits.Concurrency = conc
		cfg.Retry.Attempts = 1
		tc := newTeacher(b, cfg, store, nil)
		reqs := make([]*Request, calls)
		for i := range reqs {
			reqs[i] = userReq(fmt.Sprintf("%s question %d: what is %d + %d?", prefix, i, i, i), 0)
		}
		runtime.GC()
		stop := make(chan struct{})
		peak := peakHeap(stop)
		cpu0, t0 := cpuTime(), time.Now()
		res := Map(context.Background(), tc, reqs, Text)
		wall, cpu := time.Since(t0), cpuTime()-cpu0
		close(stop)
		if f, _ := Failed(res); f > 0 {
			b.Fatalf("%d calls failed: %v", f, res[0].Err)
		}
		rate := float64(calls) / wall.Seconds()
		b.ReportMetric(rate, "calls/s")
		b.ReportMetric(100*rate/ceiling, "%ceiling")
		b.ReportMetric(float64(wall.Microseconds())/float64(calls)-float64(latency.Microseconds())/conc, "µs-wall-overhead/call")
		b.ReportMetric(float64(cpu.Microseconds())/float64(calls), "µs-cpu/call")
		b.ReportMetric(float64(peak())/(1<<20), "MiB-peak-heap")
		st := tc.Stats()
		b.ReportMetric(float64(st.CacheHits), "hits")
	}
	b.Run("cache=off", func(b *testing.B) {
		store = nil
		for b.Loop() {
			run(b, "off", calls)
		}
	})
	for _, kind := range []string{"local", "gcs"} {
		n := calls
		if kind == "gcs" {
			n = min(calls, gcsCalls)
		}
		b.Run("cache="+kind+"/cold", func(b *testing.B) {
			for b.Loop() {
				store = openStore(kind)
				run(b, "cold", n)
				store.Close()
			}
		})
		b.Run("cache="+kind+"/warm", func(b *testing.B) {
			store = openStore(kind)
			defer store.Close()
			run(b, "warm", n) // fill
			for b.Loop() {
				run(b, "warm", n)
			}
		})
	}
}
