package storage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// localMeta is the hidden folder inside a local root that holds what a
// plain file cannot: object metadata, lock files and temp files.
const localMeta = Reserved

// lockStripes bounds the number of lock files: keys hash onto them.
const lockStripes = 64

// local is the Store over a folder.
//
// Layout under root:
//
//	<key>                        the object's bytes, a plain file
//	.statjob/meta/<key>          JSON {ino, generation, sha256, content type}
//	.statjob/locks/<n>           flock(2) files, one per stripe of keys
//	.statjob/tmp/                temp files, renamed or linked into place
//
// A generation is a random token written to the meta file together with the
// inode number of the file it describes. The meta file is written before the
// object is renamed into place, so Stat trusts it only when the inode
// matches; otherwise (a file not written by a Store, or a writer caught
// between the two renames) the generation is derived from the inode and
// modification time, which still changes on every replacement. Writers hold
// an exclusive flock on the key's stripe while they check the precondition
// and commit, so compare-and-swap is safe between processes;
// create-if-absent commits with link(2), which fails if the name exists.
type local struct {
	root string // absolute, cleaned
}

type localMetaFile struct {
	Ino         uint64 `json:"ino"`
	Generation  string `json:"generation"`
	SHA256      string `json:"sha256"`
	ContentType string `json:"content_type,omitempty"`
}

func openLocal(root string) (*local, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	for _, d := range []string{"", "meta", "locks", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, localMeta, d), 0o755); err != nil {
			return nil, fmt.Errorf("open file://%s: %w", filepath.ToSlash(abs), err)
		}
	}
	return &local{root: abs}, nil
}

func (l *local) URI(key string) string {
	return "file://" + filepath.ToSlash(l.root) + "/" + key
}

func (l *local) Conditional() bool { return true }
func (l *local) Close() error      { return nil }

func (l *local) path(key string) string { return filepath.Join(l.root, filepath.FromSlash(key)) }
func (l *local) metaPath(key string) string {
	return filepath.Join(l.root, localMeta, "meta", filepath.FromSlash(key))
}

// lock takes the exclusive flock of key's stripe; the returned func releases it.
func (l *local) lock(key string) (func(), error) {
	h := fnv.New32a()
	h.Write([]byte(key))
	p := filepath.Join(l.root, localMeta, "locks", fmt.Sprint(h.Sum32()%lockStripes))
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing the descriptor drops the lock
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func newToken() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (l *local) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Attrs, error) {
	if err := CheckKey(key); err != nil {
		return Attrs{}, err
	}
	uri := l.URI(key)
	if opts.IfAbsent && opts.IfGeneration != "" {
		return Attrs{}, fmt.Errorf("put %s: IfAbsent and IfGeneration together", uri)
	}
	a, err := l.put(ctx, key, r, opts)
	if err != nil {
		return Attrs{}, fmt.Errorf("put %s: %w", uri, err)
	}
	return a, nil
}

func (l *local) put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Attrs, error) {
	tmp, err := os.CreateTemp(filepath.Join(l.root, localMeta, "tmp"), "put-*")
	if err != nil {
		return Attrs{}, err
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // after a rename or link this removes nothing or the extra name
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), ctxReader{ctx, r})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Attrs{}, err
	}
	fi, err := os.Stat(tmpName)
	if err != nil {
		return Attrs{}, err
	}
	if err := ctx.Err(); err != nil {
		return Attrs{}, err
	}
	meta := localMetaFile{Ino: inode(fi), Generation: newToken(), SHA256: hex.EncodeToString(h.Sum(nil)), ContentType: opts.ContentType}

	unlock, err := l.lock(key)
	if err != nil {
		return Attrs{}, err
	}
	defer unlock()
	cur, err := l.stat(key)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotExist) {
		return Attrs{}, err
	}
	switch {
	case opts.IfAbsent && exists:
		return Attrs{}, ErrExists
	case opts.IfGeneration != "" && (!exists || cur.Generation != opts.IfGeneration):
		return Attrs{}, ErrStale
	}
	if err := l.writeMeta(key, meta); err != nil {
		return Attrs{}, err
	}
	dst := l.path(key)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return Attrs{}, err
	}
	if opts.IfAbsent {
		// link fails if the name exists, even when another writer that
		// does not take our lock got there first.
		if err := os.Link(tmpName, dst); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return Attrs{}, ErrExists
			}
			return Attrs{}, err
		}
	} else if err := os.Rename(tmpName, dst); err != nil {
		return Attrs{}, err
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return Attrs{}, err
	}
	return Attrs{Key: key, Size: fi.Size(), SHA256: meta.SHA256, Generation: meta.Generation, Updated: fi.ModTime()}, nil
}

func (l *local) writeMeta(key string, m localMetaFile) error {
	p := l.metaPath(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	b, _ := json.Marshal(m)
	f, err := os.CreateTemp(filepath.Join(l.root, localMeta, "tmp"), "meta-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// stat reads the attributes of key; errors are not wrapped with the URI.
func (l *local) stat(key string) (Attrs, error) {
	fi, err := os.Lstat(l.path(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return Attrs{}, ErrNotExist
		}
		return Attrs{}, err
	}
	if !fi.Mode().IsRegular() {
		return Attrs{}, ErrNotExist
	}
	return l.attrs(key, fi), nil
}

func (l *local) attrs(key string, fi fs.FileInfo) Attrs {
	a := Attrs{Key: key, Size: fi.Size(), Updated: fi.ModTime()}
	var m localMetaFile
	if b, err := os.ReadFile(l.metaPath(key)); err == nil && json.Unmarshal(b, &m) == nil && m.Ino == inode(fi) {
		a.Generation, a.SHA256 = m.Generation, m.SHA256
	} else {
		a.Generation = fmt.Sprintf("i%x.%x", inode(fi), fi.ModTime().UnixNano())
	}
	return a
}

func (l *local) Stat(ctx context.Context, key string) (Attrs, error) {
	if err := CheckKey(key); err != nil {
		return Attrs{}, err
	}
	a, err := l.stat(key)
	if err != nil {
		return Attrs{}, fmt.Errorf("stat %s: %w", l.URI(key), err)
	}
	return a, nil
}

func (l *local) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return l.GetRange(ctx, key, 0, -1)
}

func (l *local) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	uri := l.URI(key)
	if offset < 0 {
		return nil, fmt.Errorf("read %s: negative offset %d", uri, offset)
	}
	f, err := os.Open(l.path(key))
	if err == nil {
		var fi fs.FileInfo
		if fi, err = f.Stat(); err == nil && !fi.Mode().IsRegular() {
			err = fs.ErrNotExist
		}
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			err = ErrNotExist
		}
		return nil, fmt.Errorf("read %s: %w", uri, err)
	}
	if offset == 0 && length < 0 {
		return f, nil
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", uri, err)
	}
	var rd io.Reader = f
	if length >= 0 {
		rd = io.LimitReader(f, length)
	}
	return struct {
		io.Reader
		io.Closer
	}{rd, f}, nil
}

func (l *local) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	unlock, err := l.lock(key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", l.URI(key), err)
	}
	defer unlock()
	if _, err := l.stat(key); errors.Is(err, ErrNotExist) {
		return nil
	}
	if err := os.Remove(l.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", l.URI(key), err)
	}
	if err := os.Remove(l.metaPath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", l.URI(key), err)
	}
	return nil
}

func (l *local) Copy(ctx context.Context, dst, src string) (Attrs, error) {
	if err := CheckKey(dst); err != nil {
		return Attrs{}, err
	}
	r, err := l.Get(ctx, src)
	if err != nil {
		return Attrs{}, fmt.Errorf("copy %s to %s: %w", l.URI(src), l.URI(dst), err)
	}
	defer r.Close()
	var ct string
	var m localMetaFile
	if b, err := os.ReadFile(l.metaPath(src)); err == nil && json.Unmarshal(b, &m) == nil {
		ct = m.ContentType
	}
	return l.Put(ctx, dst, r, PutOptions{ContentType: ct})
}

// List walks the folder in key order. Directory entries sort as name+"/"
// so that "a.txt" comes before "a/b", as in the clouds' byte order.
func (l *local) List(ctx context.Context, prefix string, fn func(Attrs) error) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	// Start from the deepest folder the prefix names fully.
	dirKey := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dirKey = prefix[:i+1]
	}
	err := l.walk(ctx, dirKey, prefix, fn)
	if err != nil {
		return fmt.Errorf("list %s: %w", l.URI(prefix), err)
	}
	return nil
}

func (l *local) walk(ctx context.Context, dirKey, prefix string, fn func(Attrs) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(l.root, filepath.FromSlash(dirKey)))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return err
	}
	type ent struct {
		key string
		dir bool
	}
	var ents []ent
	for _, e := range entries {
		k := dirKey + e.Name()
		if k == localMeta {
			continue
		}
		if e.IsDir() {
			k += "/"
		} else if !e.Type().IsRegular() {
			continue
		}
		// Keep what can hold keys with prefix: k has the prefix, or k is
		// a folder on the way to it.
		if strings.HasPrefix(k, prefix) || (e.IsDir() && strings.HasPrefix(prefix, k)) {
			ents = append(ents, ent{k, e.IsDir()})
		}
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].key < ents[j].key })
	for _, e := range ents {
		if e.dir {
			if err := l.walk(ctx, e.key, prefix, fn); err != nil {
				return err
			}
			continue
		}
		fi, err := os.Lstat(l.path(e.key))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while listing
			}
			return err
		}
		if err := fn(l.attrs(e.key, fi)); err != nil {
			return err
		}
	}
	return nil
}
