package storage_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

// faulty puts a FaultProxy in front of the emulator c points at and tunes
// the client to give up on a stall after three seconds (a loaded 2-core
// machine under -race can take over a second to answer a forwarded request;
// a timeout there makes the client repeat a request the emulator already
// took, which fake-gcs-server answers 404 for a finished resumable upload).
func faulty(t *testing.T, c storage.Config, f storagetest.Faults) (storage.Config, func() storagetest.FaultCounts) {
	ep := &c.S3.Endpoint
	if strings.HasPrefix(c.Root, "gs://") {
		ep = &c.GCS.Endpoint
	}
	proxy, counts := storagetest.FaultProxy(t, *ep, f)
	*ep = proxy
	c.StallTimeout = 3 * time.Second
	c.MaxBackoff = 50 * time.Millisecond
	c.MaxAttempts = 10
	return c, counts
}

// faultyStore opens a store through faulty's proxy and adds the proxy's
// counts to total when t ends.
func faultyStore(t *testing.T, c storage.Config, f storagetest.Faults, total *storagetest.FaultCounts) storage.Store {
	c, counts := faulty(t, c, f)
	t.Cleanup(func() {
		n := counts()
		total.Requests += n.Requests
		total.Unavailable += n.Unavailable
		total.Stalled += n.Stalled
		total.Reset += n.Reset
	})
	return storagetest.Open(t, c)
}

// TestFaults runs the core of the suite through a proxy that answers 503 to
// one request in seven and stalls one in forty: every operation must still
// succeed, by retrying.
func TestFaults(t *testing.T) {
	backends := map[string]func(*testing.T) (storage.Config, bool){
		"gcs-fake":    func(t *testing.T) (storage.Config, bool) { return storagetest.FakeGCS(t), true },
		"s3-gofakes3": func(t *testing.T) (storage.Config, bool) { return storagetest.GoFakeS3(t), true },
		"s3-versitygw": func(t *testing.T) (storage.Config, bool) {
			return storagetest.Versitygw(t)
		},
	}
	for name, start := range backends {
		t.Run(name, func(t *testing.T) {
			var total storagetest.FaultCounts
			o := storagetest.Options{
				LargeSize: 24 << 20, // several chunks / parts
				ListKeys:  300,
				Racers:    8,
				Tests:     []string{"RoundTrip", "Range", "CreateIfAbsent", "CreateIfAbsentRace", "CompareAndSwap", "List", "Copy", "Large"},
			}
			storagetest.RunWith(t, o, func(t *testing.T) storage.Store {
				c, ok := start(t)
				if !ok {
					t.Skip("versitygw not installed")
				}
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
// answer are transient too; every operation still succeeds by retrying.
func TestThrottlingAndResets(t *testing.T) {
	backends := map[string]func(*testing.T) storage.Config{
		"gcs-fake":    func(t *testing.T) storage.Config { return storagetest.FakeGCS(t) },
		"s3-gofakes3": func(t *testing.T) storage.Config { return storagetest.GoFakeS3(t) },
	}
	for name, start := range backends {
		t.Run(name, func(t *testing.T) {
			var total storagetest.FaultCounts
			o := storagetest.Options{LargeSize: 20 << 20, ListKeys: 100, Racers: 4,
				Tests: []string{"RoundTrip", "Range", "CreateIfAbsent", "CompareAndSwap", "List", "Copy", "Large"}}
			storagetest.RunWith(t, o, func(t *testing.T) storage.Store {
				f := storagetest.Faults{UnavailableEvery: 5, UnavailableStatus: http.StatusTooManyRequests, ResetEvery: 7}
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
	c, _ := faulty(t, storagetest.GoFakeS3(t), storagetest.Faults{StripConditions: true})
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
		c, _ := faulty(t, storagetest.GoFakeS3(t), storagetest.Faults{StripConditions: true})
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
	backends := map[string]func(*testing.T) (storage.Config, bool){
		"gcs-fake":     func(t *testing.T) (storage.Config, bool) { return storagetest.FakeGCS(t), true },
		"s3-gofakes3":  func(t *testing.T) (storage.Config, bool) { return storagetest.GoFakeS3(t), true },
		"s3-versitygw": func(t *testing.T) (storage.Config, bool) { return storagetest.Versitygw(t) },
	}
	const size = 3 << 20
	want := storagetest.DataSHA256(5, size)
	for name, start := range backends {
		t.Run(name, func(t *testing.T) {
			c, ok := start(t)
			if !ok {
				t.Skip("versitygw not installed")
			}
			c, counts := faulty(t, c, storagetest.Faults{BodyStallEvery: 2})
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
