package job

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

// TestLeaseExpiry moves an injected clock: a lease holds until it expires,
// then another runner takes it over, and the old holder learns it lost it.
func TestLeaseExpiry(t *testing.T) {
	forBackends(t, func(t *testing.T, st storage.Store) {
		ctx := context.Background()
		clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		now := func() time.Time { return clock }
		a := &leaser{store: st, holder: "a", ttl: time.Minute, heartbeat: 20 * time.Second, now: now}
		bb := &leaser{store: st, holder: "b", ttl: time.Minute, heartbeat: 20 * time.Second, now: now}
		key := runKey("r", "leases/gen")

		genA, err := a.acquire(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		var held *HeldError
		if _, err := bb.acquire(ctx, key); !errors.As(err, &held) || held.Lease.Holder != "a" || !held.Lease.Expires.Equal(clock.Add(time.Minute)) {
			t.Fatalf("b.acquire while a holds: %v", err)
		}
		clock = clock.Add(59 * time.Second)
		if _, err := bb.acquire(ctx, key); !errors.As(err, &held) {
			t.Fatalf("b.acquire 1s before expiry: %v", err)
		}
		clock = clock.Add(2 * time.Second)
		genB, err := bb.acquire(ctx, key)
		if err != nil {
			t.Fatalf("b.acquire after expiry: %v", err)
		}
		// a's heartbeat finds the lease gone; its release leaves b's alone.
		ha := &hold{l: a, key: key, gen: genA, stop: make(chan struct{}), done: make(chan struct{})}
		if err := ha.renew(ctx); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("a.renew after takeover: %v", err)
		}
		close(ha.done)
		if err := ha.release(ctx); err != nil {
			t.Fatal(err)
		}
		if ls, _, _ := a.read(ctx, key); ls.Holder != "b" || ls.Released {
			t.Fatalf("lease after a's release: %+v", ls)
		}
		// b releases: a takes it at once, expiry or not.
		hb := &hold{l: bb, key: key, gen: genB, stop: make(chan struct{}), done: make(chan struct{})}
		close(hb.done)
		if err := hb.release(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := a.acquire(ctx, key); err != nil {
			t.Fatalf("a.acquire after b released: %v", err)
		}
		// unlock breaks a live lease: b takes it at once.
		if ls, err := BreakLease(ctx, st, "r", "gen"); err != nil || ls.Holder != "a" {
			t.Fatalf("BreakLease: %+v %v", ls, err)
		}
		if _, err := bb.acquire(ctx, key); err != nil {
			t.Fatalf("b.acquire after unlock: %v", err)
		}
	})
}

// TestHeartbeat runs in a synctest bubble: fake time passes, the heartbeat
// keeps the lease alive far past its TTL, and stops the work when the lease
// is broken.
func TestHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		st := storagetest.Local(t)
		a := &leaser{store: st, holder: "a", ttl: time.Minute, heartbeat: 20 * time.Second, now: time.Now}
		other := &leaser{store: st, holder: "b", ttl: time.Minute, heartbeat: 20 * time.Second, now: time.Now}
		key := runKey("r", "leases/gen")
		lost := make(chan struct{})
		h, err := a.take(ctx, key, func() { close(lost) })
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Minute) // ten TTLs
		synctest.Wait()
		var held *HeldError
		if _, err := other.acquire(ctx, key); !errors.As(err, &held) || held.Lease.Holder != "a" {
			t.Fatalf("after 10 minutes of heartbeats: %v", err)
		}
		if left := held.Lease.Expires.Sub(time.Now()); left <= 0 || left > time.Minute {
			t.Fatalf("lease expires in %s, want within the TTL", left)
		}
		select {
		case <-lost:
			t.Fatal("lease reported lost while held")
		default:
		}
		if _, err := BreakLease(ctx, st, "r", "gen"); err != nil {
			t.Fatal(err)
		}
		if _, err := other.acquire(ctx, key); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Second) // past a's next heartbeat
		synctest.Wait()
		select {
		case <-lost:
		default:
			t.Fatal("a's heartbeat did not notice the lease was taken")
		}
		if err := h.release(ctx); err != nil {
			t.Fatal(err)
		}
		if ls, _, _ := a.read(ctx, key); ls.Holder != "b" || ls.Released {
			t.Fatalf("a's release touched b's lease: %+v", ls)
		}
	})
}

// TestRetriedTaskTakesOver: a batch task's next attempt takes over the
// leases of its dead attempt at once; another task still waits.
func TestRetriedTaskTakesOver(t *testing.T) {
	ctx := context.Background()
	st := storagetest.Local(t)
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	mk := func(holder, task string) *leaser {
		return &leaser{store: st, holder: holder, task: task, ttl: time.Minute, heartbeat: 20 * time.Second, now: now}
	}
	key := runKey("r", "leases/probe")
	if _, err := mk("attempt-1", "job-9/3").acquire(ctx, key); err != nil {
		t.Fatal(err)
	}
	var held *HeldError
	if _, err := mk("other", "job-9/4").acquire(ctx, key); !errors.As(err, &held) {
		t.Fatalf("task 4 took task 3's live lease: %v", err)
	}
	if _, err := mk("outside", "").acquire(ctx, key); !errors.As(err, &held) {
		t.Fatalf("a runner outside batch took a live lease: %v", err)
	}
	if _, err := mk("attempt-2", "job-9/3").acquire(ctx, key); err != nil {
		t.Fatalf("task 3's next attempt: %v", err)
	}
}
