// Package storagetest proves a storage.Store keeps the storage contract, and
// gives other packages' tests real backends to run against.
//
// Backend authors run the conformance suite:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store { return openMine(t) })
//	}
//
// Packages built on storage (the job runner, the teacher cache) take every
// backend, each fresh and empty, and run their own checks on each:
//
//	for _, b := range storagetest.Backends(t) {
//		t.Run(b.Name, func(t *testing.T) { useStore(t, b.Store) })
//	}
//
// Backends starts the emulators on loopback and stops them when t ends: a
// local folder, GCS through fake-gcs-server in-process, S3 through gofakes3
// in-process, and S3 through a versitygw process when the binary is
// installed (scripts/test-deps.sh installs it; missing, it is left out, or
// fails the test under STATJOB_TEST_STRICT=1).
//
// FakeGCS, GoFakeS3 and Versitygw return a storage.Config rather than a
// Store, so a test can open several stores on one server (two runners on
// one bucket) or put a FaultProxy in front of it (Flaky: a store's Config
// through one, with retries tuned for tests). The S3 helpers point this
// test process's AWS environment (AWS_ACCESS_KEY_ID, …) at the emulators'
// keys, the way real credentials reach the SDK.
//
// Data(seed, n) streams seeded bytes for large objects without holding them.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/statjob/statjob/storage"
)

// Options tunes Run for slow or special backends. The zero value runs all.
type Options struct {
	// LargeSize is the size of the streamed large object; 0 means 256 MiB,
	// negative skips it.
	LargeSize int64
	// ListKeys is the number of keys of the listing test; 0 means 2,500.
	ListKeys int
	// Racers is the number of goroutines racing a conditional write; 0 means 16.
	Racers int
	// Tests names the subtests to run (e.g. "RoundTrip", "Large"); empty: all.
	Tests []string
}

// Run runs the conformance suite against fresh stores from newStore (one
// per subtest; each must start empty).
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	RunWith(t, Options{}, newStore)
}

// RunWith is Run with options.
func RunWith(t *testing.T, o Options, newStore func(t *testing.T) storage.Store) {
	if o.LargeSize == 0 {
		o.LargeSize = 256 << 20
	}
	if o.ListKeys == 0 {
		o.ListKeys = 2500
	}
	if o.Racers == 0 {
		o.Racers = 16
	}
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store, Options)
	}{
		{"RoundTrip", testRoundTrip},
		{"Empty", testEmpty},
		{"NotExist", testNotExist},
		{"BadKeys", testBadKeys},
		{"UnicodeKeys", testUnicodeKeys},
		{"Range", testRange},
		{"Overwrite", testOverwrite},
		{"CreateIfAbsent", testCreateIfAbsent},
		{"CreateIfAbsentRace", testCreateIfAbsentRace},
		{"CompareAndSwap", testCompareAndSwap},
		{"CompareAndSwapRace", testCompareAndSwapRace},
		{"List", testList},
		{"ListPrefix", testListPrefix},
		{"Delete", testDelete},
		{"Copy", testCopy},
		{"CancelledWriter", testCancelledWriter},
		{"FailingReader", testFailingReader},
		{"Large", testLarge},
	}
	for _, tc := range tests {
		if len(o.Tests) > 0 && !slices.Contains(o.Tests, tc.name) {
			continue
		}
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t), o) })
	}
}

// Data returns n bytes of seeded pseudo-random data as a stream, so large
// objects are never held in memory.
func Data(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8(seedBytes(seed)), n)
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

// DataSHA256 is the hex sha256 of Data(seed, n).
func DataSHA256(seed uint64, n int64) string {
	h := sha256.New()
	if _, err := io.Copy(h, Data(seed, n)); err != nil {
		panic(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func put(t *testing.T, s storage.Store, key string, body []byte) storage.Attrs {
	t.Helper()
	a, err := s.Put(context.Background(), key, bytes.NewReader(body), storage.PutOptions{})
	if err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
	return a
}

// ReadAll reads key whole, failing t on error.
func ReadAll(t testing.TB, s storage.Store, key string) []byte {
	t.Helper()
	r, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

func readRange(t *testing.T, s storage.Store, key string, off, n int64) []byte {
	t.Helper()
	r, err := s.GetRange(context.Background(), key, off, n)
	if err != nil {
		t.Fatalf("GetRange %s %d+%d: %v", key, off, n, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read range %s: %v", key, err)
	}
	return b
}

func testRoundTrip(t *testing.T, s storage.Store, _ Options) {
	body := []byte("the quick brown fox\n")
	a := put(t, s, "runs/r1/stage/out.jsonl", body)
	if a.Key != "runs/r1/stage/out.jsonl" || a.Size != int64(len(body)) || a.SHA256 != sum(body) || a.Generation == "" {
		t.Errorf("Put attrs = %+v, want key, size %d, sha256 %s and a generation", a, len(body), sum(body))
	}
	if got := ReadAll(t, s, "runs/r1/stage/out.jsonl"); !bytes.Equal(got, body) {
		t.Errorf("Get = %q, want %q", got, body)
	}
	st, err := s.Stat(context.Background(), "runs/r1/stage/out.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if st.Key != a.Key || st.Size != a.Size || st.SHA256 != a.SHA256 || st.Generation != a.Generation {
		t.Errorf("Stat = %+v, want %+v", st, a)
	}
	if st.Updated.IsZero() {
		t.Errorf("Stat.Updated is zero")
	}
	if u := s.URI("runs/r1/stage/out.jsonl"); !strings.HasSuffix(u, "/runs/r1/stage/out.jsonl") || !strings.Contains(u, "://") {
		t.Errorf("URI = %q", u)
	}
}

func testEmpty(t *testing.T, s storage.Store, _ Options) {
	a := put(t, s, "empty", nil)
	if a.Size != 0 || a.SHA256 != sum(nil) {
		t.Errorf("Put empty: %+v, want size 0 sha256 %s", a, sum(nil))
	}
	if got := ReadAll(t, s, "empty"); len(got) != 0 {
		t.Errorf("Get empty = %d bytes", len(got))
	}
	st, err := s.Stat(context.Background(), "empty")
	if err != nil || st.Size != 0 || st.SHA256 != sum(nil) {
		t.Errorf("Stat empty = %+v, %v", st, err)
	}
}

func testNotExist(t *testing.T, s storage.Store, _ Options) {
	ctx := context.Background()
	if _, err := s.Get(ctx, "missing"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Get missing: %v, want ErrNotExist", err)
	}
	if _, err := s.GetRange(ctx, "missing", 1, 2); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("GetRange missing: %v, want ErrNotExist", err)
	}
	if _, err := s.Stat(ctx, "dir/missing"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Stat missing: %v, want ErrNotExist", err)
	} else if !strings.Contains(err.Error(), "dir/missing") {
		t.Errorf("error %q does not name the object", err)
	}
	if err := s.Delete(ctx, "missing"); err != nil {
		t.Errorf("Delete missing: %v, want nil", err)
	}
	if _, err := s.Copy(ctx, "dst", "missing"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Copy missing: %v, want ErrNotExist", err)
	}
	put(t, s, "dir/file", []byte("x"))
	if _, err := s.Stat(ctx, "dir"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Stat of a key prefix: %v, want ErrNotExist", err)
	}
}

func testBadKeys(t *testing.T, s storage.Store, _ Options) {
	ctx := context.Background()
	for _, k := range []string{"", "/abs", "../up", "a/../../b", "a/./b", "a//b", "trailing/", "nul\x00", "back\\slash", "\xff"} {
		if _, err := s.Put(ctx, k, strings.NewReader("x"), storage.PutOptions{}); !errors.Is(err, storage.ErrBadKey) {
			t.Errorf("Put %q: %v, want ErrBadKey", k, err)
		}
		if _, err := s.Get(ctx, k); !errors.Is(err, storage.ErrBadKey) {
			t.Errorf("Get %q: %v, want ErrBadKey", k, err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, storage.ErrBadKey) {
			t.Errorf("Stat %q: %v, want ErrBadKey", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, storage.ErrBadKey) {
			t.Errorf("Delete %q: %v, want ErrBadKey", k, err)
		}
	}
}

func testUnicodeKeys(t *testing.T, s storage.Store, _ Options) {
	keys := []string{"a b/c d.txt", "ünïcödé/日本語 ファイル.json", "emoji/🙂+%20&=?#.txt", "tab\there", "quote\"'"}
	for i, k := range keys {
		put(t, s, k, []byte(fmt.Sprint(i)))
	}
	for i, k := range keys {
		if got := string(ReadAll(t, s, k)); got != fmt.Sprint(i) {
			t.Errorf("Get %q = %q, want %q", k, got, fmt.Sprint(i))
		}
	}
	got := listKeys(t, s, "")
	want := append([]string(nil), keys...)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("List = %q, want %q", got, want)
	}
}

func testRange(t *testing.T, s storage.Store, _ Options) {
	body := []byte("0123456789abcdef")
	put(t, s, "r", body)
	for _, c := range []struct {
		off, n int64
		want   string
	}{{0, 4, "0123"}, {10, 3, "abc"}, {12, -1, "cdef"}, {14, 100, "ef"}, {0, -1, string(body)}, {5, 0, ""}} {
		if got := readRange(t, s, "r", c.off, c.n); string(got) != c.want {
			t.Errorf("GetRange(%d, %d) = %q, want %q", c.off, c.n, got, c.want)
		}
	}
}

func testOverwrite(t *testing.T, s storage.Store, _ Options) {
	a1 := put(t, s, "k", []byte("one"))
	a2 := put(t, s, "k", []byte("two!"))
	if a1.Generation == a2.Generation {
		t.Errorf("generation unchanged by overwrite: %q", a1.Generation)
	}
	if got := ReadAll(t, s, "k"); string(got) != "two!" {
		t.Errorf("Get = %q, want two!", got)
	}
	st, err := s.Stat(context.Background(), "k")
	if err != nil || st.Generation != a2.Generation || st.Size != 4 || st.SHA256 != sum([]byte("two!")) {
		t.Errorf("Stat = %+v, %v; want generation %q size 4", st, err, a2.Generation)
	}
}

// conditionalOrUnsupported checks that a store without conditional writes
// refuses them; it returns false when the caller should stop.
func conditionalOrUnsupported(t *testing.T, s storage.Store) bool {
	t.Helper()
	if s.Conditional() {
		return true
	}
	ctx := context.Background()
	if _, err := s.Put(ctx, "c", strings.NewReader("x"), storage.PutOptions{IfAbsent: true}); !errors.Is(err, storage.ErrUnsupported) {
		t.Errorf("IfAbsent on a store without conditional writes: %v, want ErrUnsupported", err)
	}
	if _, err := s.Put(ctx, "c", strings.NewReader("x"), storage.PutOptions{IfGeneration: "1"}); !errors.Is(err, storage.ErrUnsupported) {
		t.Errorf("IfGeneration on a store without conditional writes: %v, want ErrUnsupported", err)
	}
	if _, err := s.Stat(ctx, "c"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("a refused conditional write left an object: %v", err)
	}
	return false
}

func testCreateIfAbsent(t *testing.T, s storage.Store, _ Options) {
	if !conditionalOrUnsupported(t, s) {
		return
	}
	ctx := context.Background()
	a, err := s.Put(ctx, "m/MANIFEST.json", strings.NewReader("first"), storage.PutOptions{IfAbsent: true})
	if err != nil {
		t.Fatalf("first create: %v", err)
	}
	_, err = s.Put(ctx, "m/MANIFEST.json", strings.NewReader("second"), storage.PutOptions{IfAbsent: true})
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), "m/MANIFEST.json") {
		t.Errorf("error %q does not name the object", err)
	}
	if got := ReadAll(t, s, "m/MANIFEST.json"); string(got) != "first" {
		t.Errorf("after a refused create: %q, want first", got)
	}
	st, _ := s.Stat(ctx, "m/MANIFEST.json")
	if st.Generation != a.Generation {
		t.Errorf("generation %q changed to %q by a refused create", a.Generation, st.Generation)
	}
}

func testCreateIfAbsentRace(t *testing.T, s storage.Store, o Options) {
	if !conditionalOrUnsupported(t, s) {
		return
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		wins   []int
		others []error
	)
	start := make(chan struct{})
	for i := range o.Racers {
		wg.Go(func() {
			<-start
			_, err := s.Put(context.Background(), "race", strings.NewReader(fmt.Sprint("writer ", i)), storage.PutOptions{IfAbsent: true})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins = append(wins, i)
			case !errors.Is(err, storage.ErrExists):
				others = append(others, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(others) > 0 {
		t.Errorf("losers got %v, want ErrExists", others)
	}
	if len(wins) != 1 {
		t.Fatalf("%d winners %v, want exactly 1", len(wins), wins)
	}
	if got := string(ReadAll(t, s, "race")); got != fmt.Sprint("writer ", wins[0]) {
		t.Errorf("object = %q, want the winner's %q", got, fmt.Sprint("writer ", wins[0]))
	}
}

func testCompareAndSwap(t *testing.T, s storage.Store, _ Options) {
	if !conditionalOrUnsupported(t, s) {
		return
	}
	ctx := context.Background()
	if _, err := s.Put(ctx, "lease", strings.NewReader("x"), storage.PutOptions{IfGeneration: "12345"}); !errors.Is(err, storage.ErrStale) {
		t.Errorf("CAS on an absent object: %v, want ErrStale", err)
	}
	a1 := put(t, s, "lease", []byte("holder=a"))
	a2, err := s.Put(ctx, "lease", strings.NewReader("holder=b"), storage.PutOptions{IfGeneration: a1.Generation})
	if err != nil {
		t.Fatalf("CAS with the current generation: %v", err)
	}
	if a2.Generation == a1.Generation || a2.Generation == "" {
		t.Errorf("CAS generation %q -> %q, want a new one", a1.Generation, a2.Generation)
	}
	_, err = s.Put(ctx, "lease", strings.NewReader("holder=c"), storage.PutOptions{IfGeneration: a1.Generation})
	if !errors.Is(err, storage.ErrStale) {
		t.Fatalf("CAS with a stale generation: %v, want ErrStale", err)
	}
	if got := ReadAll(t, s, "lease"); string(got) != "holder=b" {
		t.Errorf("after a stale CAS: %q, want holder=b", got)
	}
	// Delete and re-create: the old generation must not match the new
	// object. (On S3 the generation is the ETag, an MD5 of the content for
	// single PUTs: the same bytes again would carry the same token.)
	if err := s.Delete(ctx, "lease"); err != nil {
		t.Fatal(err)
	}
	put(t, s, "lease", []byte("holder=e"))
	if _, err := s.Put(ctx, "lease", strings.NewReader("holder=d"), storage.PutOptions{IfGeneration: a2.Generation}); !errors.Is(err, storage.ErrStale) {
		t.Errorf("CAS with the generation of a deleted object: %v, want ErrStale", err)
	}
}

func testCompareAndSwapRace(t *testing.T, s storage.Store, o Options) {
	if !conditionalOrUnsupported(t, s) {
		return
	}
	base := put(t, s, "counter", []byte("0"))
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		wins   int
		others []error
	)
	start := make(chan struct{})
	for i := range o.Racers {
		wg.Go(func() {
			<-start
			_, err := s.Put(context.Background(), "counter", strings.NewReader(fmt.Sprint(i+1)), storage.PutOptions{IfGeneration: base.Generation})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, storage.ErrStale):
				others = append(others, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(others) > 0 {
		t.Errorf("losers got %v, want ErrStale", others)
	}
	if wins != 1 {
		t.Errorf("%d CAS winners from one generation, want exactly 1", wins)
	}
}

func listKeys(t *testing.T, s storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	err := s.List(context.Background(), prefix, func(a storage.Attrs) error {
		keys = append(keys, a.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List %q: %v", prefix, err)
	}
	return keys
}

func testList(t *testing.T, s storage.Store, o Options) {
	want := make([]string, o.ListKeys)
	for i := range want {
		want[i] = fmt.Sprintf("shards/%d/part-%05d", i%7, i)
	}
	// Write with a few goroutines: thousands of sequential round trips are slow.
	var wg sync.WaitGroup
	errs := make(chan error, len(want))
	work := make(chan string)
	for range 16 {
		wg.Go(func() {
			for k := range work {
				if _, err := s.Put(context.Background(), k, strings.NewReader(k), storage.PutOptions{}); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, k := range want {
		work <- k
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	put(t, s, "other", []byte("x"))
	sort.Strings(want)
	var got []string
	err := s.List(context.Background(), "shards/", func(a storage.Attrs) error {
		got = append(got, a.Key)
		if a.Size != int64(len(a.Key)) {
			return fmt.Errorf("%s: size %d, want %d", a.Key, a.Size, len(a.Key))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("List returned %d keys, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("List[%d] = %q, want %q (order or content wrong)", i, got[i], want[i])
		}
	}
	// fn's error stops the listing and comes back.
	stop := errors.New("enough")
	n := 0
	err = s.List(context.Background(), "", func(storage.Attrs) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("List stopped after %d with %v, want 3 and the callback's error", n, err)
	}
}

func testListPrefix(t *testing.T, s storage.Store, _ Options) {
	for _, k := range []string{"a.txt", "a/b", "a/c/d", "ab", "b", "a-", "a/b2"} {
		put(t, s, k, []byte(k))
	}
	for _, c := range []struct{ prefix, want string }{
		{"", "a-,a.txt,a/b,a/b2,a/c/d,ab,b"},
		{"a", "a-,a.txt,a/b,a/b2,a/c/d,ab"},
		{"a/", "a/b,a/b2,a/c/d"},
		{"a/b", "a/b,a/b2"},
		{"a/c/", "a/c/d"},
		{"zz", ""},
		{"a/zz/", ""},
	} {
		if got := strings.Join(listKeys(t, s, c.prefix), ","); got != c.want {
			t.Errorf("List(%q) = %s, want %s", c.prefix, got, c.want)
		}
	}
}

func testDelete(t *testing.T, s storage.Store, _ Options) {
	put(t, s, "d/x", []byte("x"))
	put(t, s, "d/y", []byte("y"))
	if err := s.Delete(context.Background(), "d/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(context.Background(), "d/x"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Stat after Delete: %v, want ErrNotExist", err)
	}
	if got := strings.Join(listKeys(t, s, "d/"), ","); got != "d/y" {
		t.Errorf("List after Delete = %s, want d/y", got)
	}
}

func testCopy(t *testing.T, s storage.Store, _ Options) {
	body := bytes.Repeat([]byte("copy me "), 1000)
	src := put(t, s, "src/obj", body)
	a, err := s.Copy(context.Background(), "dst/obj", "src/obj")
	if err != nil {
		t.Fatal(err)
	}
	if a.Key != "dst/obj" || a.Size != src.Size || a.SHA256 != src.SHA256 {
		t.Errorf("Copy attrs = %+v, want size %d sha256 %s", a, src.Size, src.SHA256)
	}
	if got := ReadAll(t, s, "dst/obj"); !bytes.Equal(got, body) {
		t.Errorf("copied content differs")
	}
	st, err := s.Stat(context.Background(), "dst/obj")
	if err != nil || st.SHA256 != src.SHA256 {
		t.Errorf("Stat of copy = %+v, %v; want sha256 %s", st, err, src.SHA256)
	}
}

// testCancelledWriter stops a writer half way (its context is cancelled
// while the upload waits for more data) and checks that readers, before and
// after, see either nothing or the whole previous object.
func testCancelledWriter(t *testing.T, s storage.Store, _ Options) {
	old := put(t, s, "existing", []byte("old content"))
	for _, key := range []string{"fresh", "existing"} {
		ctx, cancel := context.WithCancel(context.Background())
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := s.Put(ctx, key, pr, storage.PutOptions{})
			done <- err
		}()
		// 12 MiB: past the first resumable chunk / multipart part of the
		// test configurations, so some bytes are on the server.
		if _, err := io.Copy(pw, Data(1, 12<<20)); err != nil {
			t.Fatal(err)
		}
		checkUntouched(t, s, key, old)
		cancel()
		pw.CloseWithError(context.Canceled)
		if err := <-done; err == nil {
			t.Fatalf("Put %s with a cancelled context succeeded", key)
		}
		checkUntouched(t, s, key, old)
	}
	for _, k := range listKeys(t, s, "") {
		if k != "existing" {
			t.Errorf("a cancelled writer left %q visible", k)
		}
	}
}

func checkUntouched(t *testing.T, s storage.Store, key string, old storage.Attrs) {
	t.Helper()
	st, err := s.Stat(context.Background(), key)
	if key == "fresh" {
		if !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("half-written %s visible: %+v, %v", key, st, err)
		}
		return
	}
	if err != nil || st.Generation != old.Generation {
		t.Errorf("%s changed by an unfinished write: %+v, %v", key, st, err)
	}
	if got := ReadAll(t, s, key); string(got) != "old content" {
		t.Errorf("%s reads %d bytes, want the old content", key, len(got))
	}
}

type failingReader struct {
	r io.Reader
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("source broke")
	}
	return n, err
}

func testFailingReader(t *testing.T, s storage.Store, _ Options) {
	_, err := s.Put(context.Background(), "broken", &failingReader{Data(2, 20<<20)}, storage.PutOptions{})
	if err == nil || !strings.Contains(err.Error(), "source broke") {
		t.Fatalf("Put from a failing reader: %v, want its error", err)
	}
	if _, err := s.Stat(context.Background(), "broken"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("a failed write left an object: %v", err)
	}
}

func testLarge(t *testing.T, s storage.Store, o Options) {
	if o.LargeSize < 0 {
		t.Skip("large objects disabled for this backend")
	}
	want := DataSHA256(3, o.LargeSize)
	wantTail, _ := io.ReadAll(io.NewSectionReader(readerAt{3}, o.LargeSize-10, 10))
	a, err := s.Put(context.Background(), "ckpt/model.safetensors", Data(3, o.LargeSize), storage.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Size != o.LargeSize || a.SHA256 != want {
		t.Errorf("Put large: size %d sha256 %s, want %d %s", a.Size, a.SHA256, o.LargeSize, want)
	}
	r, err := s.Get(context.Background(), "ckpt/model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != o.LargeSize || got != want {
		t.Errorf("Get large: %d bytes sha256 %s, want %d %s", n, got, o.LargeSize, want)
	}
	if tail := readRange(t, s, "ckpt/model.safetensors", o.LargeSize-10, -1); !bytes.Equal(tail, wantTail) {
		t.Errorf("tail range = %x, want %x", tail, wantTail)
	}
}

// readerAt reads Data(seed, ∞) at an offset by regenerating the stream up
// to it; fine for a test's few reads.
type readerAt struct{ seed uint64 }

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	d := Data(r.seed, off+int64(len(p)))
	if _, err := io.CopyN(io.Discard, d, off); err != nil {
		return 0, err
	}
	return io.ReadFull(d, p)
}
