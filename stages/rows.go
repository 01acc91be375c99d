package stages

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"

	"github.com/statjob/statjob/job"
)

// dataFile is p under the data directory dir (p as is when absolute).
func dataFile(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// outputReader opens a stage's output: a running stage's *job.Env (its
// upstream stages), or a FinishedRun (a finished run's stages).
type outputReader interface {
	Open(ctx context.Context, stage, name string) (io.ReadCloser, error)
}

// readRows reads upstream stage's JSONL output name into rows of T. A line
// that does not decode is an error naming the stage, file and line.
func readRows[T any](ctx context.Context, env outputReader, stage, name string) ([]T, error) {
	rc, err := env.Open(ctx, stage, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return decodeRows[T](rc, stage+"/"+name)
}

// decodeRows reads JSONL rows of T from r; errors name what (a file) and
// the line.
func decodeRows[T any](r io.Reader, what string) ([]T, error) {
	var rows []T
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var r T
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", what, line, err)
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return rows, nil
}

// writeRows writes rows as this stage's JSONL output name.
func writeRows[T any](ctx context.Context, env *job.Env, name string, rows []T) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("encode %s: %w", name, err)
		}
	}
	return env.WriteFile(ctx, name, buf.Bytes())
}

// readJSON decodes upstream stage's JSON output name into v.
func readJSON(ctx context.Context, env outputReader, stage, name string, v any) error {
	rc, err := env.Open(ctx, stage, name)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("read %s/%s: %w", stage, name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s/%s: %w", stage, name, err)
	}
	return nil
}

// writeJSON writes v, indented, as this stage's output name.
func writeJSON(ctx context.Context, env *job.Env, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	return env.WriteFile(ctx, name, append(b, '\n'))
}

// itemRand is the seeded number of one item: a hash of the seed and the
// parts that name the item, so a draw never depends on order or timing.
func itemRand(seed uint64, parts ...string) uint64 {
	h := sha256.New()
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], seed)
	h.Write(buf[:])
	for _, p := range parts {
		h.Write([]byte(strconv.Itoa(len(p)) + ":" + p))
	}
	return binary.LittleEndian.Uint64(h.Sum(nil)[:8])
}
