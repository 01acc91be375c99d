package storage_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

// faultyStore opens a store through storagetest.Flaky's proxy and adds the proxy's
// counts to total when t ends.
func faultyStore(t *testing.T, c storage.Config, f storagetest.Faults, total *storagetest.FaultCounts) storage.Store {
	c, counts := storagetest.Flaky(t, c, f)
	t.Cleanup(func() { total.Add(counts()) })
	return storagetest.Open(t, c)
}

// emulators start each cloud emulator, fresh and empty, and return its
// Config; versitygw's subtests skip when it is not installed (and fail
// under STATJOB_TEST_STRICT=1).
var emulators = map[string]func(*testing.T) storage.Config{
	"gcs-fake":    func(t *testing.T) storage.Config { return storagetest.FakeGCS(t) },
	"s3-gofakes3": func(t *testing.T) storage.Config { return storagetest.GoFakeS3(t) },
	"s3-versitygw": func(t *testing.T) storage.Config {
		c, ok := storagetest.Versitygw(t)
		if !ok {
			t.Skip("versitygw not installed")
		}
		return c
	},
}

// skipMissing skips a test whose emulator is not installed (versitygw),
// before it starts the subtests whose totals it checks.
func skipMissing(t *testing.T, name string) {
	if name == "s3-versitygw" && storagetest.VersitygwBinary() == "" && !storagetest.Strict() {
		t.Skip("versitygw not installed")
	}
}

// TestFaults runs the core of the suite through a proxy that answers 503 to
// one request in seven and stalls one in forty: every operation must still
// succeed, by retrying.
func TestFaults(t *testing.T) {
	for name, start := range emulators {
		t.Run(name, func(t *testing.T) {
			skipMissing(t, name)
			var total storagetest.FaultCounts
			o := storagetest.Options{
				LargeSize: 24 << 20, // several chunks / parts
				ListKeys:  300,
				Racers:    8,
				Tests:     []string{"RoundTrip", "Range", "CreateIfAbsent", "CreateIfAbsentRace", "CompareAndSwap", "List", "Copy", "Large"},
			}
			storagetest.RunWith(t, o, func(t *testing.T) storage.Store {
				c := start(t)
				return faultyStore(t, c, storagetest.Faults{UnavailableEvery: 7, StallEvery: 40}, &total)
			})
			t.Logf("through the proxy: %+v", total)
			if total.Unavailable == 0 || total.Stalled == 0 {
				t.Errorf("no faults injected: %+v", total)
			}
		})
	}
}

// TestThrottlingAndResets: 429 answers and connections reset before an
// answer, drawn by seeded chance, are transient too; every operation still
// succeeds by retrying.
func TestThrottlingAndResets(t *testing.T) {
	for name, start := range emulators {
		if name == "s3-versitygw" {
			continue // TestFaults covers it
		}
		t.Run(name, func(t *testing.T) {
			var total storagetest.FaultCounts
			o := storagetest.Options{LargeSize: 20 << 20, ListKeys: 100, Racers: 4,
				Tests: []string{"RoundTrip", "Range", "CreateIfAbsent", "CompareAndSwap", "List", "Copy", "Large"}}
			storagetest.RunWith(t, o, func(t *testing.T) storage.Store {
				f := storagetest.Faults{Seed: 1, Unavailable: 0.2, UnavailableStatus: http.StatusTooManyRequests, Reset: 0.15}
				return faultyStore(t, start(t), f, &total)
			})
			t.Logf("through the proxy: %+v", total)
			if total.Unavailable == 0 || total.Reset == 0 {
				t.Errorf("no faults injected: %+v", total)
			}
		})
	}
}

// TestS3ConditionalProbe: a store that ignores If-None-Match / If-Match
// (here gofakes3 behind a proxy that strips them) is found out at open, and
// conditional writes are refused instead of overwriting.
func TestS3ConditionalProbe(t *testing.T) {
	ctx := context.Background()
	honest := storagetest.Open(t, storagetest.GoFakeS3(t))
	if !honest.Conditional() {
		t.Fatal("gofakes3 honours conditional PUTs, but the probe says it does not")
	}
	c, _ := storagetest.Flaky(t, storagetest.GoFakeS3(t), storagetest.Faults{StripConditions: true})
	s := storagetest.Open(t, c)
	if s.Conditional() {
		t.Fatal("the probe missed a store that ignores conditional PUTs")
	}
	if _, err := s.Put(ctx, "k", strings.NewReader("x"), storage.PutOptions{}); err != nil {
		t.Fatalf("plain Put on a store without conditional writes: %v", err)
	}
	_, err := s.Put(ctx, "k", strings.NewReader("y"), storage.PutOptions{IfAbsent: true})
	if !errors.Is(err, storage.ErrUnsupported) || !strings.Contains(err.Error(), "s3://") {
		t.Errorf("IfAbsent: %v, want ErrUnsupported naming the URI", err)
	}
	if got := storagetest.ReadAll(t, s, "k"); string(got) != "x" {
		t.Errorf("object overwritten by a refused conditional write: %q", got)
	}
	storagetest.RunWith(t, storagetest.Options{Tests: []string{"CreateIfAbsent", "CompareAndSwap"}}, func(t *testing.T) storage.Store {
		c, _ := storagetest.Flaky(t, storagetest.GoFakeS3(t), storagetest.Faults{StripConditions: true})
		return storagetest.Open(t, c)
	})
}

func TestConditionalBackends(t *testing.T) {
	for _, b := range storagetest.Backends(t) {
		if !b.Store.Conditional() {
			t.Errorf("%s: Conditional() = false, want true", b.Name)
		}
	}
}

// TestBodyStalls: downloads whose response stops half way (headers and
// 64 KiB, then silence) resume and deliver the whole object.
func TestBodyStalls(t *testing.T) {
	const size = 3 << 20
	want := storagetest.DataSHA256(5, size)
	for name, start := range emulators {
		t.Run(name, func(t *testing.T) {
			c := start(t)
			c, counts := storagetest.Flaky(t, c, storagetest.Faults{BodyStallEvery: 2})
			s := storagetest.Open(t, c)
			if _, err := s.Put(context.Background(), "obj", storagetest.Data(5, size), storage.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, rng := range [][2]int64{{0, -1}, {1 << 20, 1 << 20}} {
				r, err := s.GetRange(context.Background(), "obj", rng[0], rng[1])
				if err != nil {
					t.Fatal(err)
				}
				h := sha256.New()
				n, err := io.Copy(h, r)
				r.Close()
				if err != nil {
					t.Fatalf("read %v: %v", rng, err)
				}
				if rng[1] < 0 && (n != size || hex.EncodeToString(h.Sum(nil)) != want) {
					t.Errorf("whole read: %d bytes sha256 %x, want %d %s", n, h.Sum(nil), size, want)
				}
				if rng[1] > 0 && n != rng[1] {
					t.Errorf("range read: %d bytes, want %d", n, rng[1])
				}
			}
			if counts().Stalled == 0 {
				t.Error("no response stalled")
			}
		})
	}
}

// A cancelled multipart upload is aborted, not left behind to be billed.
func TestS3CancelledUploadAborted(t *testing.T) {
	c, ok := storagetest.Versitygw(t)
	if !ok {
		t.Skip("versitygw not installed")
	}
	s := storagetest.Open(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, "big", pr, storage.PutOptions{})
		done <- err
	}()
	if _, err := io.Copy(pw, storagetest.Data(1, 16<<20)); err != nil { // three 5 MiB parts
		t.Fatal(err)
	}
	cancel()
	pw.CloseWithError(context.Canceled)
	if err := <-done; err == nil {
		t.Fatal("cancelled Put succeeded")
	}
	if n := storagetest.MultipartUploads(t, c); n != 0 {
		t.Errorf("%d multipart uploads left after a cancelled Put", n)
	}
}

// TestLostAnswers: writes are applied but their answer is lost (503 or a
// reset connection instead), so the SDK's retry of a conditional write
// fails its precondition although the first try succeeded. The
// conditional-write part of the suite (exactly one racer wins, a stale CAS
// is refused) holds, and small-object reads, writes, lists and copies
// still succeed.
func TestLostAnswers(t *testing.T) {
	for name, start := range emulators {
		t.Run(name, func(t *testing.T) {
			skipMissing(t, name)
			var total storagetest.FaultCounts
			o := storagetest.Options{ListKeys: 60, Racers: 6,
				Tests: []string{"RoundTrip", "CreateIfAbsent", "CreateIfAbsentRace", "CompareAndSwap", "CompareAndSwapRace", "List", "Delete", "Copy"}}
			storagetest.RunWith(t, o, func(t *testing.T) storage.Store {
				c := start(t)
				return faultyStore(t, c, storagetest.Faults{Seed: 3, Lost: 0.3, Unavailable: 0.05}, &total)
			})
			t.Logf("through the proxy: %+v", total)
			if total.LostWrites == 0 {
				t.Errorf("no write lost its answer: %+v", total)
			}
		})
	}
}

// TestLostAnswerIsOurs takes a lease-like object through create,
// compare-and-swap and a takeover by another writer, with three answers in
// ten lost: a conditional write whose answer was lost but which now holds
// exactly what this writer wrote is a success (with the new generation),
// never "someone else has it"; a write against another writer's newer
// object is still refused and leaves that object alone.
func TestLostAnswerIsOurs(t *testing.T) {
	ctx := context.Background()
	for name, start := range emulators {
		for _, byReset := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reset=%v", name, byReset), func(t *testing.T) {
				clean := start(t)
				c, counts := storagetest.Flaky(t, clean, storagetest.Faults{Seed: 11, Lost: 0.3, LostByReset: byReset})
				s := storagetest.Open(t, c)
				other := storagetest.Open(t, clean)
				for i := range 8 {
					key := fmt.Sprintf("leases/piece-%d", i)
					body := fmt.Sprintf(`{"holder":"me","i":%d,"v":0}`, i)
					a, err := s.Put(ctx, key, strings.NewReader(body), storage.PutOptions{IfAbsent: true})
					if err != nil {
						t.Fatalf("create %s: %v", key, err)
					}
					checkHolds(t, other, key, body, a)
					for v := 1; v <= 3; v++ {
						body = fmt.Sprintf(`{"holder":"me","i":%d,"v":%d}`, i, v)
						if a, err = s.Put(ctx, key, strings.NewReader(body), storage.PutOptions{IfGeneration: a.Generation}); err != nil {
							t.Fatalf("compare-and-swap %s to v%d: %v", key, v, err)
						}
						checkHolds(t, other, key, body, a)
					}
					theirs := fmt.Sprintf(`{"holder":"other","i":%d}`, i)
					b, err := other.Put(ctx, key, strings.NewReader(theirs), storage.PutOptions{IfGeneration: a.Generation})
					if err != nil {
						t.Fatalf("the other writer's takeover of %s: %v", key, err)
					}
					_, err = s.Put(ctx, key, strings.NewReader(`{"holder":"me","late":true}`), storage.PutOptions{IfGeneration: a.Generation})
					if !errors.Is(err, storage.ErrStale) {
						t.Fatalf("compare-and-swap of %s against the other writer's object: %v, want ErrStale", key, err)
					}
					_, err = s.Put(ctx, key, strings.NewReader(`{"holder":"me","again":true}`), storage.PutOptions{IfAbsent: true})
					if !errors.Is(err, storage.ErrExists) {
						t.Fatalf("create of %s over the other writer's object: %v, want ErrExists", key, err)
					}
					checkHolds(t, other, key, theirs, b)
				}
				n := counts()
				t.Logf("through the proxy: %+v", n)
				if n.LostWrites == 0 {
					t.Errorf("no write lost its answer: %+v", n)
				}
			})
		}
	}
}

// checkHolds reads key through s (a store without faults) and checks that
// it holds body at the generation a put returned.
func checkHolds(t *testing.T, s storage.Store, key, body string, a storage.Attrs) {
	t.Helper()
	if got := string(storagetest.ReadAll(t, s, key)); got != body {
		t.Fatalf("%s holds %s, want %s", key, got, body)
	}
	st, err := s.Stat(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Generation != a.Generation {
		t.Fatalf("%s is at generation %s, the put returned %s", key, st.Generation, a.Generation)
	}
}

// TestLostAnswersLarge: uploads in several chunks or parts, with answers
// lost. On S3 a retried CompleteMultipartUpload that finds its upload
// already completed is settled by reading back: every Put succeeds with the
// object sent. fake-gcs-server, unlike GCS (which tells the client how much
// of a session it holds), re-appends a retried chunk and answers 404 to a
// retried final one: a Put there may fail, and the emulator may be left
// holding a wrong object, but a Put that succeeds has stored exactly what
// was sent (the assembled size and CRC32C are checked; seed 9 meets a
// re-appended chunk).
func TestLostAnswersLarge(t *testing.T) {
	const size = 12 << 20 // two 8 MiB chunks, three 5 MiB parts
	want := storagetest.DataSHA256(4, size)
	for name, start := range emulators {
		t.Run(name, func(t *testing.T) {
			clean := start(t)
			direct := storagetest.Open(t, clean)
			var total storagetest.FaultCounts
			failed := 0
			for _, seed := range []uint64{0, 1, 9} {
				c, counts := storagetest.Flaky(t, clean, storagetest.Faults{Seed: seed, Lost: 0.4})
				s := storagetest.Open(t, c)
				key := fmt.Sprintf("ckpt/%d.safetensors", seed)
				a, err := s.Put(context.Background(), key, storagetest.Data(4, size), storage.PutOptions{})
				total.Add(counts())
				if err != nil {
					failed++
					if strings.HasPrefix(name, "s3") {
						t.Errorf("Put %s: %v", key, err)
					} else {
						t.Logf("seed %d (an emulator limit): %v", seed, err)
					}
					continue
				}
				if a.Size != size || a.SHA256 != want {
					t.Errorf("Put %s returned %d bytes sha256 %s, want %d %s", key, a.Size, a.SHA256, size, want)
				}
				r, err := direct.Get(context.Background(), key)
				if err != nil {
					t.Fatal(err)
				}
				h := sha256.New()
				n, err := io.Copy(h, r)
				r.Close()
				if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != want {
					t.Errorf("%s holds %d bytes sha256 %x (%v), want %d %s", key, n, h.Sum(nil), err, size, want)
				}
			}
			t.Logf("%d of 3 Puts failed; through the proxies: %+v", failed, total)
			if total.LostWrites == 0 {
				t.Errorf("no write lost its answer: %+v", total)
			}
		})
	}
}

// TestRetriesAreBounded: a store that answers 503 (or 429) to everything
// is tried exactly MaxAttempts times per request, then the error names the
// URI and the status.
func TestRetriesAreBounded(t *testing.T) {
	for name, start := range emulators {
		if name == "s3-versitygw" {
			continue
		}
		for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
			t.Run(fmt.Sprintf("%s/%d", name, status), func(t *testing.T) {
				clean := start(t)
				c, counts := storagetest.Flaky(t, clean, storagetest.Faults{Unavailable: 1, UnavailableStatus: status})
				c.MaxAttempts, c.MaxBackoff = 4, 10*time.Millisecond
				_, err := c.Open(context.Background()) // S3 probes with a PutObject, GCS lists
				if err == nil {
					t.Fatal("open through a store that answers only errors succeeded")
				}
				if !strings.Contains(err.Error(), c.Root) || !strings.Contains(err.Error(), fmt.Sprint(status)) {
					t.Errorf("error %q does not name the root and the status %d", err, status)
				}
				if n := counts().Requests; n != 4 {
					t.Errorf("%d requests, want MaxAttempts = 4", n)
				}
			})
		}
	}
}
