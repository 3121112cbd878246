package primary

import (
	"sync"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// leafText caches the get-leaves text of committed leaves in chunks of textChunk leaves. Hex-encoding 512 leaves
// was the largest cost of a get-leaves answer; committed leaves never change, and every leaf's line has the same
// length, so an answer for any range is a few copies out of cached chunks.
type leafText struct {
	lineLen   int // bytes of one leaf= line
	maxChunks int

	mu     sync.Mutex
	chunks map[uint64][]byte // chunk number → the text of its textChunk leaves
}

const (
	textChunk     = 64
	maxTextChunks = 2048 // about 35 MB of text: the newest 131,072 leaves, or any mix
)

func newLeafText() *leafText {
	return &leafText{
		lineLen:   len(sigsum.MarshalLeavesASCII(make([]sigsum.Leaf, 1))),
		maxChunks: maxTextChunks,
		chunks:    make(map[uint64][]byte),
	}
}

// body returns the get-leaves text of leaves [start, end), all of which the tree holds.
func (lt *leafText) body(mem *memTree, start, end uint64) []byte {
	out := make([]byte, 0, int(end-start)*lt.lineLen)
	held := mem.size() / textChunk // chunks whose leaves are all held
	for i := start; i < end; {
		c := i / textChunk
		if c >= held {
			// The tree's last, partial chunk: encoded on each request, it is not final yet.
			return append(out, sigsum.MarshalLeavesASCII(mem.leafRange(i, end))...)
		}
		text := lt.chunk(mem, c)
		first, last := i-c*textChunk, min(end, (c+1)*textChunk)-c*textChunk
		out = append(out, text[int(first)*lt.lineLen:int(last)*lt.lineLen]...)
		i = (c + 1) * textChunk
	}
	return out
}

// chunk returns chunk c's text, encoding and caching it if needed.
func (lt *leafText) chunk(mem *memTree, c uint64) []byte {
	lt.mu.Lock()
	text, ok := lt.chunks[c]
	lt.mu.Unlock()
	if ok {
		return text
	}
	text = sigsum.MarshalLeavesASCII(mem.leafRange(c*textChunk, (c+1)*textChunk))
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if len(lt.chunks) >= lt.maxChunks {
		for k := range lt.chunks { // evict one at random: map order
			delete(lt.chunks, k)
			break
		}
	}
	lt.chunks[c] = text
	return text
}
