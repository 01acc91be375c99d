// Package tokenizer is a pure-Go BPE tokenizer and chat-template renderer
// for Hugging Face checkpoints: byte-level BPE (Qwen2.5, Qwen3, Llama-3.x,
// GPT-4o's o200k as in Phi-4-mini) and SentencePiece-style BPE with byte
// fallback (Llama 2, Mistral 7B, Gemma 3).
//
// Load (or LoadDir) reads a checkpoint's tokenizer.json and
// tokenizer_config.json; Encode produces the same ids as Hugging Face's
// tokenizers: NFC normaliser, added/special tokens matched in the raw text
// first, the pre-tokenizer's split regex, the ByteLevel byte mapping and BPE
// merges by rank (cached per pre-token). Encode never adds BOS/EOS (Hugging
// Face's add_special_tokens=False): chat templates write those themselves.
// The split regexes of Qwen, Llama-3 and o200k are matched by hand-written
// code checked against regexp2; other patterns run through regexp2, whose \s
// is Unicode White_Space as in Hugging Face's Oniguruma (the JavaScript port
// differs on U+FEFF, which it counts as a space, and U+0085, which it does
// not), and whose letter, mark and number classes are Go's (Unicode 15.0: a
// character assigned later counts as punctuation). SentencePiece-style BPE
// (told apart by its decoder) writes spaces as "▁" through the normalizer
// (Prepend and Replace) or a Metaspace pre-tokenizer, merges from characters,
// and encodes a character missing from the vocabulary as its <0xXX> byte
// tokens; Decode reverses it (see sentencepiece.go). Split pre-tokenizers
// take every delimiter behaviour of Hugging Face's (Isolated, Removed,
// MergedWithPrevious, MergedWithNext, Contiguous) and invert. The
// post_processor (Gemma's and Llama's BOS) is not applied, as Encode adds
// no special tokens.
//
// ApplyChatTemplate renders the checkpoint's Jinja chat_template
// (github.com/ardanlabs/jinja, Python semantics) and returns the ids with the
// token spans the assistant wrote: the SFT loss mask, assistant content and
// its end-of-turn token. TemplateHash and Hash identify the template and
// tokenizer.json in fingerprints; Special and StopIDs give the ids that pad
// and end generation.
//
// A Tokenizer is safe for concurrent use.
package tokenizer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// ErrUnsupported is returned for tokenizer.json features this package does not
// implement (another model type, normaliser or pre-tokenizer).
var ErrUnsupported = errors.New("unsupported tokenizer feature")

// Tokenizer encodes text to token ids and back, and renders chat templates.
type Tokenizer struct {
	vocab     map[string]int // raw token bytes -> id (byte-level tokens)
	idBytes   [][]byte       // id -> raw bytes it decodes to
	merges    map[uint64]merge
	byteID    [256]int // id of each single byte
	ignoreBPE bool     // ignore_merges: a pre-token found whole in the vocabulary is one token
	nfc       bool
	split     []splitter
	sp        *sentencePiece // nil for byte-level BPE
	added     addedTokens

	hash    string // sha256 of tokenizer.json
	special Special
	tokens  map[string]string // bos_token, eos_token, ... as template variables
	chat    *chatTemplate     // nil when tokenizer_config.json has no chat_template

	mu    sync.RWMutex
	cache map[string][]int // pre-token -> ids
}

// Special holds the ids of the special tokens; -1 where the checkpoint has none.
type Special struct {
	BOS int
	EOS int
	// Pad is the padding id: pad_token, or EOS where the checkpoint has none.
	Pad int
	// EndOfTurn ends an assistant turn in the chat template (<|im_end|>,
	// <|eot_id|>, ...); EOS where the template uses none of the known ones.
	EndOfTurn int
}

type merge struct {
	rank int32
	id   int32
}

// cacheLimit bounds the per-pre-token cache; it is cleared when full.
const cacheLimit = 1 << 18

// LoadDir loads tokenizer.json and tokenizer_config.json from a directory,
// and the chat template from chat_template.jinja when there is one.
func LoadDir(dir string) (*Tokenizer, error) {
	tj, err := os.Open(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	defer tj.Close()
	tc, err := os.Open(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	defer tc.Close()
	t, err := Load(tj, tc)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(filepath.Join(dir, ChatTemplateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return t, nil
	case err != nil:
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	if err := t.SetChatTemplate(string(src)); err != nil {
		return nil, fmt.Errorf("load tokenizer: %s: %w", ChatTemplateFile, err)
	}
	return t, nil
}

// Load reads a tokenizer from the contents of tokenizer.json and
// tokenizer_config.json. config may be nil: then there are no BOS/EOS/pad
// names and no chat template.
func Load(tokenizerJSON, config io.Reader) (*Tokenizer, error) {
	var tj tokenizerFile
	h := sha256.New()
	if err := json.NewDecoder(io.TeeReader(tokenizerJSON, h)).Decode(&tj); err != nil {
		return nil, fmt.Errorf("parse tokenizer.json: %w", err)
	}
	if _, err := io.Copy(h, tokenizerJSON); err != nil { // the rest, for the hash
		return nil, fmt.Errorf("read tokenizer.json: %w", err)
	}
	t, err := build(&tj)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	t.hash = hex.EncodeToString(h.Sum(nil))
	var cfg configFile
	if config != nil {
		if err := json.NewDecoder(config).Decode(&cfg); err != nil {
			return nil, fmt.Errorf("parse tokenizer_config.json: %w", err)
		}
	}
	if err := t.configure(&cfg); err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: %w", err)
	}
	return t, nil
}

// tokenizerFile is the part of tokenizer.json this package reads.
type tokenizerFile struct {
	AddedTokens []struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		Special    bool   `json:"special"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		SingleWord bool   `json:"single_word"`
		Normalized bool   `json:"normalized"`
	} `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Decoder      json.RawMessage `json:"decoder"`
	Model        struct {
		Type                    string          `json:"type"`
		Vocab                   map[string]int  `json:"vocab"`
		Merges                  json.RawMessage `json:"merges"`
		IgnoreMerges            bool            `json:"ignore_merges"`
		ByteFallback            bool            `json:"byte_fallback"`
		FuseUnk                 bool            `json:"fuse_unk"`
		UnkToken                *string         `json:"unk_token"`
		ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	} `json:"model"`
}

func build(tj *tokenizerFile) (*Tokenizer, error) {
	m := &tj.Model
	if m.Type != "BPE" {
		return nil, fmt.Errorf("model.type %q: %w (only BPE)", m.Type, ErrUnsupported)
	}
	if (m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "") || (m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "") {
		return nil, fmt.Errorf("model.continuing_subword_prefix/end_of_word_suffix: %w", ErrUnsupported)
	}
	t := &Tokenizer{ignoreBPE: m.IgnoreMerges, cache: map[string][]int{}}
	n := 0
	for _, id := range m.Vocab {
		n = max(n, id+1)
	}
	for _, a := range tj.AddedTokens {
		n = max(n, a.ID+1)
	}
	t.idBytes = make([][]byte, n)
	if pieces, err := isSentencePiece(tj); err != nil {
		return nil, err
	} else if pieces {
		if err := t.buildSentencePiece(tj, n); err != nil {
			return nil, err
		}
	} else if err := t.buildByteLevel(tj); err != nil {
		return nil, err
	}
	for _, a := range tj.AddedTokens {
		if a.Content == "" {
			return nil, fmt.Errorf("added_tokens id %d: empty content", a.ID)
		}
		if a.SingleWord {
			return nil, fmt.Errorf("added_tokens %q: single_word: %w", a.Content, ErrUnsupported)
		}
		switch {
		case t.sp == nil:
			t.idBytes[a.ID] = []byte(a.Content)
		case t.vocab[a.Content] != a.ID || t.idBytes[a.ID] == nil:
			// The decoder sees added tokens as it sees the vocabulary's
			// (Gemma's "▁▁" is two spaces); one also in the vocabulary
			// decodes as there (a <0xXX> token as its byte).
			t.idBytes[a.ID] = []byte(t.sp.decodeReplace.Replace(a.Content))
		}
		t.added.add(addedToken{id: a.ID, content: a.Content, special: a.Special, lstrip: a.LStrip, rstrip: a.RStrip})
	}
	t.added.finish()
	return t, nil
}

// isSentencePiece tells the two kinds of BPE apart by the decoder: ByteLevel
// (or none) for byte-level BPE, a Sequence of Replace, ByteFallback, Fuse and
// Strip for SentencePiece-style BPE.
func isSentencePiece(tj *tokenizerFile) (bool, error) {
	if isNull(tj.Decoder) {
		if tj.Model.ByteFallback {
			return false, fmt.Errorf("model.byte_fallback without a decoder: %w", ErrUnsupported)
		}
		return false, nil
	}
	var d struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(tj.Decoder, &d); err != nil {
		return false, fmt.Errorf("decoder: %w", err)
	}
	if d.Type == "ByteLevel" {
		if tj.Model.ByteFallback {
			return false, fmt.Errorf("model.byte_fallback with a ByteLevel decoder: %w", ErrUnsupported)
		}
		return false, nil
	}
	if d.Type != "Sequence" {
		return false, fmt.Errorf("decoder %q: %w", d.Type, ErrUnsupported)
	}
	return true, nil
}

func (t *Tokenizer) buildByteLevel(tj *tokenizerFile) error {
	m := &tj.Model
	t.vocab = make(map[string]int, len(m.Vocab))
	for tok, id := range m.Vocab {
		if id < 0 {
			return fmt.Errorf("model.vocab[%q]: negative id %d", tok, id)
		}
		b, ok := byteLevelDecode(tok)
		if !ok {
			return fmt.Errorf("model.vocab[%q]: not a byte-level token: %w", tok, ErrUnsupported)
		}
		t.idBytes[id] = b
		t.vocab[string(b)] = id
	}
	for i := range 256 {
		id, ok := t.vocab[string([]byte{byte(i)})]
		if !ok {
			return fmt.Errorf("model.vocab: no token for byte 0x%02x", i)
		}
		t.byteID[i] = id
	}
	if err := t.loadMerges(m.Merges, byteLevelDecode); err != nil {
		return err
	}
	if err := t.loadNormalizer(tj.Normalizer); err != nil {
		return err
	}
	return t.loadPreTokenizer(tj.PreTokenizer)
}

// loadMerges reads merges in either format: ["a b", ...] or [["a","b"], ...];
// key turns a token as written into its key in t.vocab.
func (t *Tokenizer) loadMerges(raw json.RawMessage, key func(string) ([]byte, bool)) error {
	var pairs [][2]string
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		pairs = make([][2]string, len(strs))
		for i, s := range strs {
			a, b, ok := strings.Cut(s, " ")
			if !ok {
				return fmt.Errorf("model.merges[%d] %q: want two tokens separated by a space", i, s)
			}
			pairs[i] = [2]string{a, b}
		}
	} else if err := json.Unmarshal(raw, &pairs); err != nil {
		return fmt.Errorf("model.merges: %w", err)
	}
	t.merges = make(map[uint64]merge, len(pairs))
	for rank, p := range pairs {
		a, okA := key(p[0])
		b, okB := key(p[1])
		if !okA || !okB {
			return fmt.Errorf("model.merges[%d] %q: not byte-level tokens", rank, p)
		}
		ida, okA := t.vocab[string(a)]
		idb, okB := t.vocab[string(b)]
		idm, okM := t.vocab[string(a)+string(b)]
		if !okA || !okB || !okM {
			return fmt.Errorf("model.merges[%d] %q: token not in vocab", rank, p)
		}
		key := pairKey(ida, idb)
		if _, dup := t.merges[key]; !dup {
			t.merges[key] = merge{rank: int32(rank), id: int32(idm)}
		}
	}
	return nil
}

func pairKey(a, b int) uint64 { return uint64(a)<<32 | uint64(uint32(b)) }

func (t *Tokenizer) loadNormalizer(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var n struct {
		Type        string            `json:"type"`
		Normalizers []json.RawMessage `json:"normalizers"`
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		return fmt.Errorf("normalizer: %w", err)
	}
	switch n.Type {
	case "NFC":
		t.nfc = true
	case "Sequence":
		for _, sub := range n.Normalizers {
			if err := t.loadNormalizer(sub); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("normalizer %q: %w", n.Type, ErrUnsupported)
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// Encode returns the token ids of text, without BOS/EOS, as Hugging Face's
// encode(text, add_special_tokens=False). Special tokens written in text
// (e.g. "<|im_end|>") become their ids. Where a plain prompt needs Llama's BOS
// (add_special_tokens=True), prepend Special().BOS.
func (t *Tokenizer) Encode(text string) []int {
	ids, _ := t.encode(text, false)
	return ids
}

// encode returns the ids of text and, when withOffsets, the byte offset in
// text where each token starts.
func (t *Tokenizer) encode(text string, withOffsets bool) (ids, offsets []int) {
	ids = make([]int, 0, len(text)/3+1)
	for _, seg := range t.added.split(text) {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			if withOffsets {
				offsets = append(offsets, seg.start)
			}
			continue
		}
		s := text[seg.start:seg.end]
		if t.sp != nil {
			ids, offsets = t.appendSegment(ids, offsets, s, seg.start, withOffsets)
			continue
		}
		var origin []int // normalised offset -> offset in s, when NFC changed s
		if t.nfc && !norm.NFC.IsNormalString(s) {
			s, origin = nfc(s, withOffsets)
		}
		for _, w := range t.preTokenize(s) {
			before := len(ids)
			ids = t.appendWord(ids, s[w[0]:w[1]])
			if !withOffsets {
				continue
			}
			pos := w[0]
			for _, id := range ids[before:] {
				if origin != nil {
					offsets = append(offsets, seg.start+origin[pos])
				} else {
					offsets = append(offsets, seg.start+pos)
				}
				pos += len(t.idBytes[id])
			}
		}
	}
	return ids, offsets
}

// nfc normalises s and, when withOffsets, maps each byte offset of the result
// to the start of the normalisation segment it came from in s.
func nfc(s string, withOffsets bool) (string, []int) {
	if !withOffsets {
		return norm.NFC.String(s), nil
	}
	var out []byte
	var origin []int
	var it norm.Iter
	it.InitString(norm.NFC, s)
	for !it.Done() {
		start := it.Pos()
		seg := it.Next()
		out = append(out, seg...)
		for range seg {
			origin = append(origin, start)
		}
	}
	return string(out), append(origin, len(s))
}

// appendWord appends the BPE ids of one pre-token.
func (t *Tokenizer) appendWord(dst []int, w string) []int {
	if len(w) == 1 {
		return append(dst, t.byteID[w[0]])
	}
	if t.ignoreBPE {
		if id, ok := t.vocab[w]; ok {
			return append(dst, id)
		}
	}
	t.mu.RLock()
	ids, ok := t.cache[w]
	t.mu.RUnlock()
	if ok {
		return append(dst, ids...)
	}
	ids = t.bpe(w)
	t.mu.Lock()
	if len(t.cache) >= cacheLimit {
		clear(t.cache)
	}
	t.cache[w] = ids
	t.mu.Unlock()
	return append(dst, ids...)
}

// Decode returns the text of ids. Invalid UTF-8 (a multi-byte character cut
// between ids) becomes U+FFFD. Special tokens are written out as text.
func (t *Tokenizer) Decode(ids []int) string {
	if t.sp != nil {
		return t.decodePieces(ids)
	}
	b := t.DecodeBytes(ids)
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// DecodeBytes returns the raw bytes of ids (for streaming output, where a
// character may be split between two ids). Unknown ids decode to nothing.
// For SentencePiece-style BPE every "▁" is a space here: Decode strips the
// one the normalizer prepended.
func (t *Tokenizer) DecodeBytes(ids []int) []byte {
	var b []byte
	for _, id := range ids {
		if id >= 0 && id < len(t.idBytes) {
			b = append(b, t.idBytes[id]...)
		}
	}
	return b
}

// VocabSize is the number of ids (vocabulary plus added tokens).
func (t *Tokenizer) VocabSize() int { return len(t.idBytes) }

// Hash is the hex sha256 of tokenizer.json, for fingerprints.
func (t *Tokenizer) Hash() string { return t.hash }

// IsSpecial reports whether id is a special token (added with special: true,
// e.g. <|im_end|>), which answers usually drop.
func (t *Tokenizer) IsSpecial(id int) bool { return t.added.special[id] }

// Special returns the special token ids.
func (t *Tokenizer) Special() Special { return t.special }

// StopIDs are the ids that end generation: EOS and the end-of-turn token
// (those the checkpoint has).
func (t *Tokenizer) StopIDs() []int {
	var ids []int
	for _, id := range []int{t.special.EOS, t.special.EndOfTurn} {
		if id >= 0 && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// AddedToken returns the text of the added token with this id (one that
// text produces only by spelling it out, such as "<image_soft_token>").
func (t *Tokenizer) AddedToken(id int) (string, bool) {
	for _, a := range t.added.tokens {
		if a.id == id {
			return a.content, true
		}
	}
	return "", false
}

// TokenID returns the id of a token written out as text (an added token such
// as "<|im_end|>", or a vocabulary entry's bytes).
func (t *Tokenizer) TokenID(tok string) (int, bool) {
	if id, ok := t.added.ids[tok]; ok {
		return id, true
	}
	id, ok := t.vocab[tok]
	return id, ok
}
