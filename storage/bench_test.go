package storage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

// benchSize is 256 MiB, or STATJOB_BENCH_MIB MiB.
var benchSize = func() int64 {
	if n, err := strconv.ParseInt(os.Getenv("STATJOB_BENCH_MIB"), 10, 64); err == nil && n > 0 {
		return n << 20
	}
	return 256 << 20
}()

// BenchmarkThroughput uploads and downloads a 256 MiB object through each
// backend, against a plain local file copy of the same file. The client is
// a child process (this test binary re-run), so its peak RSS is the
// client's alone: the emulators run in this process or their own.
//
//	go test -run '^$' -bench Throughput -benchtime 1x ./storage/
func BenchmarkThroughput(b *testing.B) {
	src := filepath.Join(b.TempDir(), "src")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, storagetest.Data(7, benchSize)); err != nil {
		b.Fatal(err)
	}
	f.Close()

	b.Run("file-copy", func(b *testing.B) {
		for b.Loop() {
			dst := filepath.Join(b.TempDir(), "dst")
			up := timeIt(func() error { return copyFile(dst, src) })
			down := timeIt(func() error { return readFile(dst) })
			report(b, up, down, 0)
		}
	})
	configs := []struct {
		name  string
		start func(testing.TB) (storage.Config, bool)
	}{
		{"local", func(t testing.TB) (storage.Config, bool) { return storage.Config{Root: t.TempDir()}, true }},
		{"gcs-fake", func(t testing.TB) (storage.Config, bool) { return storagetest.FakeGCS(t), true }},
		{"s3-gofakes3", func(t testing.TB) (storage.Config, bool) { return storagetest.GoFakeS3(t), true }},
		{"s3-versitygw", storagetest.Versitygw},
	}
	for _, c := range configs {
		b.Run(c.name, func(b *testing.B) {
			cfg, ok := c.start(b)
			if !ok {
				b.Skip("not installed")
			}
			// The defaults a user gets, not the tests' small chunks.
			d := storage.DefaultConfig("")
			cfg.GCS.ChunkSize, cfg.S3.PartSize, cfg.S3.Concurrency = d.GCS.ChunkSize, d.S3.PartSize, d.S3.Concurrency
			j, _ := json.Marshal(cfg)
			for b.Loop() {
				cmd, gate, res := child(b, string(j), "bench", src)
				gate.Close()
				r := <-res
				if err := cmd.Wait(); err != nil {
					b.Fatalf("bench client: %v", err)
				}
				var up, down float64
				var rss int64
				if _, err := fmt.Sscan(r, &up, &down, &rss); err != nil {
					b.Fatalf("bench client said %q", r)
				}
				report(b, time.Duration(up*float64(time.Second)), time.Duration(down*float64(time.Second)), rss)
			}
		})
	}
}

// benchClient runs in the child: upload the file named by src, download
// it, print both times and the process's peak RSS in KiB.
func benchClient(t *testing.T, s storage.Store, src string) {
	ctx := context.Background()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t0 := time.Now()
	a, err := s.Put(ctx, "bench/object", f, storage.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	up := time.Since(t0)
	if a.Size != benchSize {
		t.Fatalf("uploaded %d bytes", a.Size)
	}
	t0 = time.Now()
	r, err := s.Get(ctx, "bench/object")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	r.Close()
	if err != nil || n != benchSize {
		t.Fatalf("downloaded %d bytes: %v", n, err)
	}
	down := time.Since(t0)
	fmt.Println("RESULT", strconv.FormatFloat(up.Seconds(), 'f', 4, 64), strconv.FormatFloat(down.Seconds(), 'f', 4, 64), peakRSS(t))
}

// peakRSS is this process's peak resident set in KiB: VmHWM, the high-water
// mark of its own address space. (getrusage's ru_maxrss is no use here: at
// exec it takes over the high-water mark of the parent's address space,
// which the child shared until then.)
func peakRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kib
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

func report(b *testing.B, up, down time.Duration, rssKiB int64) {
	mib := float64(benchSize) / (1 << 20)
	b.ReportMetric(mib/up.Seconds(), "up-MiB/s")
	b.ReportMetric(mib/down.Seconds(), "down-MiB/s")
	if rssKiB > 0 {
		b.ReportMetric(float64(rssKiB)/1024, "client-peak-RSS-MiB")
	}
	b.ReportMetric(0, "ns/op")
}

func timeIt(fn func() error) time.Duration {
	t0 := time.Now()
	if err := fn(); err != nil {
		panic(err)
	}
	return time.Since(t0)
}

// copyFile is the baseline: what a local Put does at least (copy + fsync).
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

func readFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}
