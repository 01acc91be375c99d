package storage

import "testing"

func TestSmallChunkFitsTheObject(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct{ n, chunk, want int }{
		{0, 16 * mib, 256 << 10},
		{600, 16 * mib, 256 << 10},
		{256 << 10, 16 * mib, 512 << 10}, // strictly larger than the object: one request
		{3 * mib, 16 * mib, 3*mib + 256<<10},
		{16*mib - 1, 16 * mib, 16 * mib},
	} {
		if got := smallChunk(c.n, c.chunk); got != c.want || got <= c.n && c.n < c.chunk {
			t.Errorf("smallChunk(%d, %d) = %d, want %d", c.n, c.chunk, got, c.want)
		}
	}
}
