package committed

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
	maxTextChunks = 1024 // about 17 MB of text: the newest 65,536 leaves, or any mix
)

func newLeafText() *leafText {
	return &leafText{
		lineLen:   len(sigsum.MarshalLeavesASCII(make([]sigsum.Leaf, 1))),
		maxChunks: maxTextChunks,
		chunks:    make(map[uint64][]byte),
	}
}

// body returns the get-leaves text of leaves [start, end), all of which the tree has, if it holds them in memory
// or their text is cached; else the caller reads them from storage.
func (lt *leafText) body(tree *memTree, start, end uint64) ([]byte, bool) {
	out := make([]byte, 0, int(end-start)*lt.lineLen)
	held := tree.sizeHeld() / textChunk // chunks whose leaves are all in the tree
	for i := start; i < end; {
		c := i / textChunk
		if c >= held {
			// The tree's last, partial chunk: encoded on each request, it is not final yet.
			leaves, ok := tree.heldLeaves(i, end)
			if !ok {
				return nil, false
			}
			return append(out, sigsum.MarshalLeavesASCII(leaves)...), true
		}
		text, ok := lt.chunk(tree, c)
		if !ok {
			return nil, false
		}
		first, last := i-c*textChunk, min(end, (c+1)*textChunk)-c*textChunk
		out = append(out, text[int(first)*lt.lineLen:int(last)*lt.lineLen]...)
		i = (c + 1) * textChunk
	}
	return out, true
}

// chunk returns chunk c's text, encoding and caching it if the tree holds its leaves.
func (lt *leafText) chunk(tree *memTree, c uint64) ([]byte, bool) {
	lt.mu.Lock()
	text, ok := lt.chunks[c]
	lt.mu.Unlock()
	if ok {
		return text, true
	}
	leaves, ok := tree.heldLeaves(c*textChunk, (c+1)*textChunk)
	if !ok {
		return nil, false
	}
	text = sigsum.MarshalLeavesASCII(leaves)
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if len(lt.chunks) >= lt.maxChunks {
		for k := range lt.chunks { // evict one at random: map order
			delete(lt.chunks, k)
			break
		}
	}
	lt.chunks[c] = text
	return text, true
}
