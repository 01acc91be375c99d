package storage_test

import (
	"context"
	"errors"
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

// TestFaults runs the core of the suite through a proxy that answers 503 to
// two requests in sixteen and stalls one: every operation must still
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
				ListKeys:  1001,     // past one page
				Racers:    8,
				Tests:     []string{"RoundTrip", "Range", "CreateIfAbsent", "CreateIfAbsentRace", "CompareAndSwap", "List", "Copy", "Large"},
			}
			storagetest.RunWith(t, o, func(t *testing.T) storage.Store {
				c, ok := start(t)
				if !ok {
					t.Skip("versitygw not installed")
				}
				c, counts := faulty(t, c, storagetest.Faults{Every: 16, Unavailable: 2, Stall: 1})
				t.Cleanup(func() {
					n := counts()
					total.Requests += n.Requests
					total.Unavailable += n.Unavailable
					total.Stalled += n.Stalled
				})
				return storagetest.Open(t, c)
			})
			t.Logf("through the proxy: %+v", total)
			if total.Unavailable == 0 || total.Stalled == 0 {
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
