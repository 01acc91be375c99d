package teacher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/statjob/statjob/storage"
)

// CachePrefix is where raw replies live in the storage root.
const CachePrefix = "cache/teacher"

// cacheEntry is what one cache object holds: the raw reply and enough of the
// request to tell what it answered.
type cacheEntry struct {
	Provider string    `json:"provider"`
	Model    string    `json:"model"`
	Prompt   string    `json:"prompt,omitempty"`
	Sample   int       `json:"sample"`
	Reply    Reply     `json:"reply"`
	Created  time.Time `json:"created"`
	Source   string    `json:"source"` // online or batch:<id>
	// Payer is the work that paid for the reply (Options.Payer).
	Payer string `json:"payer,omitempty"`
}

// CacheKey is the hex sha256 of everything that determines a reply:
// provider, model, messages, parameters, schema, prompt version and sample
// index.
func CacheKey(provider, model string, req *Request) string {
	b, err := json.Marshal(struct {
		Provider string `json:"provider"`
		Model    string `json:"model"`
		*Request
	}{provider, model, req})
	if err != nil {
		// A Request is plain data; only an unencodable schema value gets here.
		panic(fmt.Sprintf("teacher: encode request for cache key: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func cacheObject(key string) string { return CachePrefix + "/" + key[:2] + "/" + key + ".json" }

// cache answers from the store when it can and writes every new reply to it
// before returning it.
//
// A reply this work (payer) paid for before a restart counts against the
// budget when it is read, once per process: the work did pay for it, and a
// restart must not reset what it may still spend. Replies other work paid
// for (another run, a stage that reuses the same calls) cost nothing.
type cache struct {
	next            Model
	store           storage.Store
	provider, model string
	payer           string
	budget          *budget
	stats           *counters
	log             *slog.Logger
	// counted: keys whose reply this process has booked (paid, or carried
	// from before a restart).
	counted sync.Map
}

func (c *cache) lookup(ctx context.Context, key string) (*cacheEntry, error) {
	rc, err := c.store.Get(ctx, cacheObject(key))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var e cacheEntry
	if err := json.NewDecoder(rc).Decode(&e); err != nil {
		return nil, fmt.Errorf("decode %s: %w: %v", c.store.URI(cacheObject(key)), errDamaged, err)
	}
	e.Reply.Cached = true
	return &e, nil
}

func (c *cache) Call(ctx context.Context, req *Request) (*Reply, error) {
	key := CacheKey(c.provider, c.model, req)
	e, err := c.lookup(ctx, key)
	damaged := errors.Is(err, errDamaged)
	switch {
	case err == nil:
		c.stats.cacheHits.Add(1)
		if c.payer != "" && e.Payer == c.payer {
			if _, booked := c.counted.LoadOrStore(key, true); !booked {
				c.budget.carry(req, &e.Reply)
			}
		}
		return &e.Reply, nil
	case !errors.Is(err, storage.ErrNotExist):
		// A damaged or unreadable entry costs one call, not the stage; a
		// damaged one is replaced by the new reply.
		c.log.Warn("teacher cache read failed; calling the model", "key", key, "err", err)
	}
	c.stats.cacheMisses.Add(1)
	r, err := c.next.Call(ctx, req)
	if err != nil {
		c.stats.cacheFailures.Add(1)
		return nil, err
	}
	put := c.put
	if damaged {
		put = c.replace
	}
	// The reply is paid for: store it even when the stage is being
	// cancelled (ctx's values stay, its cancellation does not).
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheWriteTimeout)
	defer cancel()
	if err := put(pctx, key, req, r, "online"); err != nil {
		c.stats.cacheWriteErrors.Add(1)
		c.log.Warn("teacher cache write failed", "key", key, "err", err)
	}
	return r, nil
}

var errDamaged = errors.New("damaged cache entry")

// cacheWriteTimeout bounds the write of a reply that arrived while (or just
// before) the stage was cancelled.
const cacheWriteTimeout = time.Minute

func (c *cache) entry(req *Request, r *Reply, source string) ([]byte, error) {
	return json.Marshal(cacheEntry{Provider: c.provider, Model: c.model, Prompt: req.Prompt,
		Sample: req.Sample, Reply: *r, Created: time.Now().UTC(), Source: source, Payer: c.payer})
}

// put stores a reply under key unless one is there already. The reply was
// booked against the budget (online, or with its batch).
func (c *cache) put(ctx context.Context, key string, req *Request, r *Reply, source string) error {
	c.counted.Store(key, true)
	b, err := c.entry(req, r, source)
	if err != nil {
		return err
	}
	return putIfAbsent(ctx, c.store, cacheObject(key), b)
}

// replace overwrites a damaged entry.
func (c *cache) replace(ctx context.Context, key string, req *Request, r *Reply, source string) error {
	c.counted.Store(key, true)
	b, err := c.entry(req, r, source)
	if err != nil {
		return err
	}
	_, err = c.store.Put(ctx, cacheObject(key), bytes.NewReader(b), storage.PutOptions{ContentType: "application/json"})
	return err
}

func putIfAbsent(ctx context.Context, s storage.Store, key string, b []byte) error {
	opts := storage.PutOptions{IfAbsent: s.Conditional(), ContentType: "application/json"}
	_, err := s.Put(ctx, key, bytes.NewReader(b), opts)
	if errors.Is(err, storage.ErrExists) {
		return nil // a racing writer stored the same call's reply
	}
	return err
}

func readAll(ctx context.Context, s storage.Store, key string) ([]byte, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
