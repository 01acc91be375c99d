package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// SentencePiece-style BPE (Llama 2, Mistral, Gemma 3): the vocabulary holds
// Unicode pieces with "▁" for a space, the normalizer (or a Metaspace
// pre-tokenizer) writes spaces as "▁" and, except Gemma's, prepends one, BPE
// starts from characters, and a character missing from the vocabulary
// becomes its UTF-8 bytes as <0xXX> tokens (byte_fallback). The decoder
// turns "▁" back into spaces, the <0xXX> tokens into bytes, and strips the
// space the normalizer prepended (where it has a Strip step).
type sentencePiece struct {
	norm    []normOp
	meta    *metaspace
	byteTok [256]int32 // id of <0xXX>; -1 where the vocabulary has none
	unk     int        // unk_token's id; -1 without one
	fuseUnk bool
	isByte  []bool // id -> a <0xXX> token
	// decodeReplace is the decoder's Replace (e.g. "▁" -> " "), which
	// applies to every token, added tokens too.
	decodeReplace *strings.Replacer
	// The Strip decoder: how many stripChar to remove at the start and end.
	stripStart, stripStop int
	stripChar             rune
}

// normOp is one step of the normalizer: NFC, Prepend(to) or Replace(from, to).
type normOp struct {
	kind     byte // 'n' NFC, 'p' Prepend, 'r' Replace
	from, to string
}

// metaspace is the Metaspace pre-tokenizer: spaces become repl, repl is
// prepended ("always", or "first": only to text at the start of the input),
// and with split each repl starts a new pre-token.
type metaspace struct {
	repl    string
	prepend string
	split   bool
}

// spMaxCached is the longest word (in bytes) kept in the cache: without a
// pre-tokenizer a word is a whole segment of text.
const spMaxCached = 256

// buildSentencePiece reads the vocabulary, normalizer, pre-tokenizer and
// decoder of a SentencePiece-style BPE tokenizer.json.
func (t *Tokenizer) buildSentencePiece(tj *tokenizerFile, n int) error {
	m := &tj.Model
	sp := &sentencePiece{unk: -1, fuseUnk: m.FuseUnk, isByte: make([]bool, n)}
	t.sp = sp
	for i := range sp.byteTok {
		sp.byteTok[i] = -1
	}
	replace, byteFallback, err := sp.loadDecoder(tj.Decoder)
	if err != nil {
		return err
	}
	sp.decodeReplace = replace
	t.vocab = make(map[string]int, len(m.Vocab))
	for tok, id := range m.Vocab {
		if id < 0 {
			return fmt.Errorf("model.vocab[%q]: negative id %d", tok, id)
		}
		t.vocab[tok] = id
		b, isByte := byteToken(tok)
		if isByte && m.ByteFallback && tok == fmt.Sprintf("<0x%02X>", b) {
			sp.byteTok[b] = int32(id) // encoding looks up the upper-case form
		}
		if isByte && byteFallback {
			sp.isByte[id] = true
			t.idBytes[id] = []byte{b}
		} else {
			t.idBytes[id] = []byte(replace.Replace(tok))
		}
	}
	if m.UnkToken != nil {
		id, ok := t.vocab[*m.UnkToken]
		if !ok {
			return fmt.Errorf("model.unk_token %q: not in model.vocab", *m.UnkToken)
		}
		sp.unk = id
	}
	if err := t.loadMerges(m.Merges, func(s string) ([]byte, bool) { return []byte(s), true }); err != nil {
		return err
	}
	if err := sp.loadNormalizer(tj.Normalizer); err != nil {
		return err
	}
	return t.loadPieceSplit(tj.PreTokenizer)
}

// byteToken reads a byte-fallback token "<0xXX>" (as Hugging Face writes and
// reads them: six characters, two hex digits).
func byteToken(tok string) (byte, bool) {
	if len(tok) != 6 || !strings.HasPrefix(tok, "<0x") || tok[5] != '>' {
		return 0, false
	}
	var b byte
	for _, c := range tok[3:5] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = byte(c - '0')
		case c >= 'A' && c <= 'F':
			d = byte(c-'A') + 10
		case c >= 'a' && c <= 'f':
			d = byte(c-'a') + 10
		default:
			return 0, false
		}
		b = b<<4 | d
	}
	return b, true
}

type spConfig struct {
	Type          string            `json:"type"`
	Normalizers   []json.RawMessage `json:"normalizers"`
	PreTokenizers []json.RawMessage `json:"pretokenizers"`
	Decoders      []json.RawMessage `json:"decoders"`
	Prepend       string            `json:"prepend"`
	Pattern       struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	} `json:"pattern"`
	Content        json.RawMessage `json:"content"`
	Replacement    string          `json:"replacement"`
	AddPrefixSpace *bool           `json:"add_prefix_space"`
	PrependScheme  string          `json:"prepend_scheme"`
	Split          *bool           `json:"split"`
	Start          int             `json:"start"`
	Stop           int             `json:"stop"`
}

// replacePair reads a Replace step's String pattern and content.
func (c *spConfig) replacePair(where string) (from, to string, err error) {
	if c.Pattern.String == nil {
		return "", "", fmt.Errorf("%s Replace: only a String pattern: %w", where, ErrUnsupported)
	}
	if err := json.Unmarshal(c.Content, &to); err != nil {
		return "", "", fmt.Errorf("%s Replace content: %w", where, err)
	}
	if *c.Pattern.String == "" {
		return "", "", fmt.Errorf("%s Replace: empty pattern", where)
	}
	return *c.Pattern.String, to, nil
}

func (sp *sentencePiece) loadNormalizer(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var c spConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("normalizer: %w", err)
	}
	switch c.Type {
	case "Sequence":
		for _, sub := range c.Normalizers {
			if err := sp.loadNormalizer(sub); err != nil {
				return err
			}
		}
	case "NFC":
		sp.norm = append(sp.norm, normOp{kind: 'n'})
	case "Prepend":
		sp.norm = append(sp.norm, normOp{kind: 'p', to: c.Prepend})
	case "Replace":
		from, to, err := c.replacePair("normalizer")
		if err != nil {
			return err
		}
		sp.norm = append(sp.norm, normOp{kind: 'r', from: from, to: to})
	default:
		return fmt.Errorf("normalizer %q: %w", c.Type, ErrUnsupported)
	}
	return nil
}

// loadPieceSplit reads the pre-tokenizer of SentencePiece-style BPE: one
// Metaspace, or Splits (which see the normalized text, "▁" for spaces).
func (t *Tokenizer) loadPieceSplit(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var c spConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("pre_tokenizer: %w", err)
	}
	sp := t.sp
	switch c.Type {
	case "Sequence":
		for _, sub := range c.PreTokenizers {
			if err := t.loadPieceSplit(sub); err != nil {
				return err
			}
		}
		return nil
	case "Split":
		var pc preTokenizerConfig
		if err := json.Unmarshal(raw, &pc); err != nil {
			return fmt.Errorf("pre_tokenizer: %w", err)
		}
		if sp.meta != nil {
			return fmt.Errorf("pre_tokenizer Split with Metaspace: %w", ErrUnsupported)
		}
		return t.addSplitConfig(&pc)
	case "Metaspace":
	default:
		return fmt.Errorf("pre_tokenizer %q with byte-fallback BPE: %w (only Metaspace or Split)", c.Type, ErrUnsupported)
	}
	if sp.meta != nil || len(t.split) > 0 {
		return fmt.Errorf("pre_tokenizer Metaspace with another Metaspace or Split: %w", ErrUnsupported)
	}
	if utf8.RuneCountInString(c.Replacement) != 1 {
		return fmt.Errorf("pre_tokenizer Metaspace replacement %q: want one character", c.Replacement)
	}
	ms := &metaspace{repl: c.Replacement, prepend: c.PrependScheme, split: c.Split == nil || *c.Split}
	switch {
	case c.AddPrefixSpace != nil && !*c.AddPrefixSpace:
		ms.prepend = "never" // older files: add_prefix_space false, no scheme
	case ms.prepend == "":
		ms.prepend = "always"
	case ms.prepend != "always" && ms.prepend != "first" && ms.prepend != "never":
		return fmt.Errorf("pre_tokenizer Metaspace prepend_scheme %q: want always, first or never", ms.prepend)
	}
	sp.meta = ms
	return nil
}

// loadDecoder reads the decoder Sequence of Replace steps, ByteFallback, Fuse
// and Strip (after Fuse, so it strips the whole text) and returns the Replace
// steps, which apply to each vocabulary piece, and whether ByteFallback turns
// <0xXX> tokens into bytes.
func (sp *sentencePiece) loadDecoder(raw json.RawMessage) (*strings.Replacer, bool, error) {
	var c spConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, false, fmt.Errorf("decoder: %w", err)
	}
	steps := []json.RawMessage{raw}
	if c.Type == "Sequence" {
		steps = c.Decoders
	}
	var pairs []string
	byteFallback := false
	stage := 0 // 0 Replace, 1 after ByteFallback, 2 after Fuse, 3 after Strip
	for i, step := range steps {
		var d spConfig
		if err := json.Unmarshal(step, &d); err != nil {
			return nil, false, fmt.Errorf("decoder %d: %w", i, err)
		}
		switch {
		case d.Type == "Replace" && stage == 0:
			from, to, err := d.replacePair("decoder")
			if err != nil {
				return nil, false, err
			}
			pairs = append(pairs, from, to)
		case d.Type == "ByteFallback" && stage == 0:
			byteFallback, stage = true, 1
		case d.Type == "Fuse" && stage <= 1:
			stage = 2
		case d.Type == "Strip" && stage == 2:
			var content string
			if err := json.Unmarshal(d.Content, &content); err != nil || utf8.RuneCountInString(content) != 1 {
				return nil, false, fmt.Errorf("decoder Strip content %s: want one character", d.Content)
			}
			sp.stripChar, _ = utf8.DecodeRuneInString(content)
			sp.stripStart, sp.stripStop = d.Start, d.Stop
			stage = 3
		default:
			return nil, false, fmt.Errorf("decoder %q (step %d): %w (byte-fallback BPE takes Replace, ByteFallback, Fuse, Strip in that order)", d.Type, i, ErrUnsupported)
		}
	}
	if len(pairs) > 2 {
		// Each Replace sees the output of the one before: not one Replacer.
		return nil, false, fmt.Errorf("decoder: more than one Replace: %w", ErrUnsupported)
	}
	return strings.NewReplacer(pairs...), byteFallback, nil
}

// normalize applies the normalizer and the Metaspace replacement to one
// segment of text that starts at byte start of the input. With offsets it
// also returns, for each byte of the result (and its end), the offset in s
// it came from.
func (sp *sentencePiece) normalize(s string, start int, offsets bool) (string, []int) {
	var origin []int
	if offsets {
		origin = make([]int, len(s)+1)
		for i := range origin {
			origin[i] = i
		}
	}
	for _, op := range sp.norm {
		switch op.kind {
		case 'n':
			if !norm.NFC.IsNormalString(s) {
				var o []int
				s, o = nfc(s, offsets)
				if offsets {
					for i, k := range o {
						o[i] = origin[k]
					}
					origin = o
				}
			}
		case 'p':
			if s != "" {
				s, origin = prepend(s, origin, op.to)
			}
		case 'r':
			s, origin = replace(s, origin, op.from, op.to)
		}
	}
	if ms := sp.meta; ms != nil {
		s, origin = replace(s, origin, " ", ms.repl)
		if !strings.HasPrefix(s, ms.repl) && (ms.prepend == "always" || ms.prepend == "first" && start == 0) {
			s, origin = prepend(s, origin, ms.repl)
		}
	}
	return s, origin
}

func prepend(s string, origin []int, p string) (string, []int) {
	if origin != nil {
		o := make([]int, len(p), len(p)+len(origin))
		origin = append(o, origin...) // the prefix comes from offset 0
	}
	return p + s, origin
}

// replace replaces each from in s by to; the bytes of to come from where
// from was.
func replace(s string, origin []int, from, to string) (string, []int) {
	if !strings.Contains(s, from) {
		return s, origin
	}
	if origin == nil {
		return strings.ReplaceAll(s, from, to), nil
	}
	var b strings.Builder
	var o []int
	for i := 0; i < len(s); {
		if strings.HasPrefix(s[i:], from) {
			b.WriteString(to)
			for range len(to) {
				o = append(o, origin[i])
			}
			i += len(from)
			continue
		}
		b.WriteByte(s[i])
		o = append(o, origin[i])
		i++
	}
	return b.String(), append(o, origin[len(s)])
}

// appendSegment appends the ids of one segment of plain text, s =
// text[start:start+len(s)], and with offsets each token's start in text.
func (t *Tokenizer) appendSegment(ids, offsets []int, s string, start int, withOffsets bool) ([]int, []int) {
	sp := t.sp
	ns, origin := sp.normalize(s, start, withOffsets)
	pieces := [][2]int{{0, len(ns)}}
	if len(t.split) > 0 {
		pieces = t.preTokenize(ns)
	}
	for _, p := range pieces {
		for w := p[0]; w < p[1]; {
			end := p[1]
			if sp.meta != nil && sp.meta.split {
				if k := strings.Index(ns[w+1:end], sp.meta.repl); k >= 0 {
					end = w + 1 + k
				}
			}
			word := ns[w:end]
			if !withOffsets {
				ids = t.appendPieceWord(ids, word)
			} else {
				syms, head := t.spSymbols(word)
				for i := head; i >= 0; i = syms[i].next {
					ids = append(ids, int(syms[i].id))
					offsets = append(offsets, start+origin[w+int(i)])
				}
			}
			w = end
		}
	}
	return ids, offsets
}

// appendPieceWord appends the ids of one word, through the cache.
func (t *Tokenizer) appendPieceWord(dst []int, w string) []int {
	if t.ignoreBPE {
		if id, ok := t.vocab[w]; ok {
			return append(dst, id)
		}
	}
	cached := len(w) < spMaxCached
	if cached {
		t.mu.RLock()
		ids, ok := t.cache[w]
		t.mu.RUnlock()
		if ok {
			return append(dst, ids...)
		}
	}
	before := len(dst)
	syms, head := t.spSymbols(w)
	for i := head; i >= 0; i = syms[i].next {
		dst = append(dst, int(syms[i].id))
	}
	if cached {
		ids := append([]int(nil), dst[before:]...)
		t.mu.Lock()
		if len(t.cache) >= cacheLimit {
			clear(t.cache)
		}
		t.cache[w] = ids
		t.mu.Unlock()
	}
	return dst
}

// spSymbols starts a word as its characters (a character missing from the
// vocabulary as its <0xXX> byte tokens, else unk, consecutive unks fused when
// fuse_unk) and merges them. Each symbol sits at its byte offset in w; the
// result is the list linked from head.
func (t *Tokenizer) spSymbols(w string) ([]symbol, int32) {
	sp := t.sp
	syms := make([]symbol, len(w))
	head, prev := int32(-1), int32(-1)
	link := func(i int, id int32) {
		syms[i] = symbol{id: id, prev: prev, next: -1}
		if prev >= 0 {
			syms[prev].next = int32(i)
		} else {
			head = int32(i)
		}
		prev = int32(i)
	}
	for i := 0; i < len(w); {
		_, size := utf8.DecodeRuneInString(w[i:])
		if id, ok := t.vocab[w[i:i+size]]; ok {
			link(i, int32(id))
			i += size
			continue
		}
		bytesOK := true
		for k := range size {
			bytesOK = bytesOK && sp.byteTok[w[i+k]] >= 0
		}
		switch {
		case bytesOK:
			for k := range size {
				link(i+k, sp.byteTok[w[i+k]])
			}
		case sp.unk >= 0 && !(sp.fuseUnk && prev >= 0 && syms[prev].id == int32(sp.unk)):
			link(i, int32(sp.unk))
		}
		// Without an unk token Hugging Face fails to encode; the
		// character is dropped here.
		i += size
	}
	if head >= 0 {
		t.merge(syms, head)
	}
	return syms, head
}

// decode is the decoder of byte-fallback BPE: pieces with "▁" as spaces, runs
// of <0xXX> tokens as their bytes (one U+FFFD per byte where a run is not
// valid UTF-8), joined, and the Strip of the leading space.
func (t *Tokenizer) decodePieces(ids []int) string {
	sp := t.sp
	var b []byte
	run := -1 // start in b of the current run of byte tokens
	endRun := func() {
		if run >= 0 && !utf8.Valid(b[run:]) {
			n := len(b) - run
			b = b[:run]
			for range n {
				b = utf8.AppendRune(b, utf8.RuneError)
			}
		}
		run = -1
	}
	for _, id := range ids {
		if id < 0 || id >= len(t.idBytes) {
			continue
		}
		if sp.isByte[id] {
			if run < 0 {
				run = len(b)
			}
		} else {
			endRun()
		}
		b = append(b, t.idBytes[id]...)
	}
	endRun()
	s := string(b)
	for range sp.stripStart {
		r, size := utf8.DecodeRuneInString(s)
		if size == 0 || r != sp.stripChar {
			break
		}
		s = s[size:]
	}
	for range sp.stripStop {
		r, size := utf8.DecodeLastRuneInString(s)
		if size == 0 || r != sp.stripChar {
			break
		}
		s = s[:len(s)-size]
	}
	return s
}
