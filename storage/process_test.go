package storage_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

// The tests below re-run this test binary as child processes; a child
// finds its job in the environment and runs TestChild.
const (
	envRoot = "STATJOB_STORAGE_CHILD_ROOT"
	envMode = "STATJOB_STORAGE_CHILD_MODE"
	envID   = "STATJOB_STORAGE_CHILD_ID"
)

const increments = 20

func TestChild(t *testing.T) {
	root := os.Getenv(envRoot)
	if root == "" {
		t.Skip("only runs as a child of TestLocalProcesses / TestLocalKilledWriter")
	}
	ctx := context.Background()
	s, err := storage.Open(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	id := os.Getenv(envID)
	io.Copy(io.Discard, os.Stdin) // wait for the parent's go: stdin closes
	switch os.Getenv(envMode) {
	case "race":
		_, err := s.Put(ctx, "winner", strings.NewReader(id), storage.PutOptions{IfAbsent: true})
		switch {
		case err == nil:
			fmt.Println("RESULT win")
		case errors.Is(err, storage.ErrExists):
			fmt.Println("RESULT exists")
		default:
			t.Fatal(err)
		}
		for done := 0; done < increments; {
			a, err := s.Stat(ctx, "counter")
			if err != nil {
				t.Fatal(err)
			}
			n, _ := strconv.Atoi(string(storagetest.ReadAll(t, s, "counter")))
			_, err = s.Put(ctx, "counter", strings.NewReader(strconv.Itoa(n+1)), storage.PutOptions{IfGeneration: a.Generation})
			switch {
			case err == nil:
				done++
			case !errors.Is(err, storage.ErrStale):
				t.Fatal(err)
			}
		}
	case "slowput":
		// Streams 1 GiB; says so after 8 MiB and is killed by the parent.
		r := &announcer{r: storagetest.Data(9, 1<<30), after: 8 << 20}
		s.Put(ctx, id, r, storage.PutOptions{})
		t.Fatal("the writer was not killed")
	}
}

type announcer struct {
	r     io.Reader
	n     int64
	after int64
}

func (a *announcer) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if a.n < a.after && a.n+int64(n) >= a.after {
		fmt.Println("RESULT writing")
	}
	a.n += int64(n)
	return n, err
}

// child starts this test binary as a child; closing the returned stdin
// lets it go. Its stdout lines starting "RESULT " arrive on results.
func child(t *testing.T, root, mode, id string) (*exec.Cmd, io.WriteCloser, <-chan string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envRoot+"="+root, envMode+"="+mode, envID+"="+id)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	results := make(chan string, 4)
	go func() {
		defer close(results)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if r, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
				results <- r
			}
		}
	}()
	return cmd, stdin, results
}

// TestLocalProcesses: four OS processes race create-if-absent on one key
// (exactly one wins) and increment one counter by compare-and-swap
// (no increment is lost), as clients of a cloud bucket would.
func TestLocalProcesses(t *testing.T) {
	root := t.TempDir()
	s := storagetest.Open(t, storage.Config{Root: root})
	if _, err := s.Put(context.Background(), "counter", strings.NewReader("0"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	const n = 4
	var (
		cmds    []*exec.Cmd
		gates   []io.WriteCloser
		results []<-chan string
	)
	for i := range n {
		cmd, gate, res := child(t, root, "race", fmt.Sprint("child-", i))
		cmds, gates, results = append(cmds, cmd), append(gates, gate), append(results, res)
	}
	for _, g := range gates {
		g.Close()
	}
	wins, winner := 0, ""
	for i, res := range results {
		for r := range res {
			if r == "win" {
				wins++
				winner = fmt.Sprint("child-", i)
			}
		}
		if err := cmds[i].Wait(); err != nil {
			t.Fatalf("child %d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d processes won create-if-absent, want 1", wins)
	}
	if got := string(storagetest.ReadAll(t, s, "winner")); got != winner {
		t.Errorf("winner object = %q, want %q", got, winner)
	}
	if got := string(storagetest.ReadAll(t, s, "counter")); got != strconv.Itoa(n*increments) {
		t.Errorf("counter = %s after %d compare-and-swap increments", got, n*increments)
	}
}

// TestLocalKilledWriter: a process killed (SIGKILL) in the middle of a
// Put leaves neither a partial object nor a changed one.
func TestLocalKilledWriter(t *testing.T) {
	root := t.TempDir()
	s := storagetest.Open(t, storage.Config{Root: root})
	old, err := s.Put(context.Background(), "existing", strings.NewReader("old content"), storage.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"fresh", "existing"} {
		cmd, gate, res := child(t, root, "slowput", key)
		gate.Close()
		if r := <-res; r != "writing" {
			cmd.Process.Kill()
			t.Fatalf("child said %q, want writing", r)
		}
		cmd.Process.Kill()
		cmd.Wait()
		a, err := s.Stat(context.Background(), key)
		switch key {
		case "fresh":
			if !errors.Is(err, storage.ErrNotExist) {
				t.Errorf("killed writer left %s: %+v, %v", key, a, err)
			}
		default:
			if err != nil || a.Generation != old.Generation || string(storagetest.ReadAll(t, s, key)) != "old content" {
				t.Errorf("killed writer changed %s: %+v, %v", key, a, err)
			}
		}
	}
	var keys []string
	s.List(context.Background(), "", func(a storage.Attrs) error { keys = append(keys, a.Key); return nil })
	if strings.Join(keys, ",") != "existing" {
		t.Errorf("List after killed writers = %v, want [existing]", keys)
	}
}
