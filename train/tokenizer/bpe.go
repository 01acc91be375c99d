package tokenizer

// bpe merges the bytes of one pre-token by rank (see merge).
func (t *Tokenizer) bpe(w string) []int {
	n := len(w)
	syms := make([]symbol, n)
	for i := range n {
		syms[i] = symbol{id: int32(t.byteID[w[i]]), prev: int32(i - 1), next: int32(i + 1)}
	}
	syms[n-1].next = -1
	t.merge(syms, 0)
	var ids []int
	for i := int32(0); i >= 0; i = syms[i].next {
		ids = append(ids, int(syms[i].id))
	}
	return ids
}

// merge applies the merges to the symbols linked from head: the pair with the
// lowest merge rank first, the leftmost of equal ranks, until no pair merges.
// This is the order of Hugging Face's BPE model; a heap keeps long words
// O(n log n). A symbol's index stays its start in the word; head stays first.
func (t *Tokenizer) merge(syms []symbol, head int32) {
	q := make(pairQueue, 0, len(syms))
	for i := head; i >= 0 && syms[i].next >= 0; i = syms[i].next {
		r := syms[i].next
		if m, ok := t.merges[pairKey(int(syms[i].id), int(syms[r].id))]; ok {
			q.push(candidate{rank: m.rank, pos: i, left: syms[i].id, right: syms[r].id, id: m.id})
		}
	}
	for len(q) > 0 {
		c := q.pop()
		l := &syms[c.pos]
		// Skip candidates made stale by an earlier merge.
		if l.dead || l.id != c.left || l.next < 0 || syms[l.next].id != c.right {
			continue
		}
		r := &syms[l.next]
		l.id = c.id
		r.dead = true
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = c.pos
		}
		if l.prev >= 0 {
			p := &syms[l.prev]
			if m, ok := t.merges[pairKey(int(p.id), int(l.id))]; ok {
				q.push(candidate{rank: m.rank, pos: l.prev, left: p.id, right: l.id, id: m.id})
			}
		}
		if l.next >= 0 {
			nx := &syms[l.next]
			if m, ok := t.merges[pairKey(int(l.id), int(nx.id))]; ok {
				q.push(candidate{rank: m.rank, pos: c.pos, left: l.id, right: nx.id, id: m.id})
			}
		}
	}
}

type symbol struct {
	id         int32
	prev, next int32
	dead       bool
}

type candidate struct {
	rank, pos       int32
	left, right, id int32
}

// pairQueue is a binary min-heap of merge candidates: lowest rank first,
// leftmost of equal ranks.
type pairQueue []candidate

func (q pairQueue) less(i, j int) bool {
	if q[i].rank != q[j].rank {
		return q[i].rank < q[j].rank
	}
	return q[i].pos < q[j].pos
}

func (q *pairQueue) push(c candidate) {
	*q = append(*q, c)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *pairQueue) pop() candidate {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && h.less(l, m) {
			m = l
		}
		if r < len(h) && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return top
}
