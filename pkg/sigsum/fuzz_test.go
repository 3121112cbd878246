package sigsum

import (
	"bytes"
	"reflect"
	"testing"
)

// Each fuzz target checks that a parser never panics and that whatever it accepts survives a round trip through
// the canonical writer.

func addSeeds(f *testing.F, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
}

func asciiSeeds(f *testing.F) {
	addSeeds(f,
		"message="+hash1+"\nsignature="+sig1+"\npublic_key="+key1+"\n",
		"size=5\nroot_hash="+hash1+"\nsignature="+sig1+"\n",
		"size=5\nroot_hash="+hash1+"\nsignature="+sig1+"\ncosignature="+hash1+" 1700000000 "+sig1+"\n",
		"leaf="+hash1+" "+sig1+" "+hash1+"\n",
		"leaf_index=1\nnode_hash="+hash1+"\n",
		"node_hash="+hash1+"\nnode_hash="+hash1+"\n",
		"", "=\n", "size=01\n", "size=9223372036854775808\n",
	)
}

func roundTrip[T any](t *testing.T, in []byte, parse func([]byte) (T, error), marshal func(*T) []byte) {
	v, err := parse(in)
	if err != nil {
		return
	}
	out := marshal(&v)
	v2, err := parse(out)
	if err != nil {
		t.Fatalf("re-parsing %q: %v", out, err)
	}
	if !reflect.DeepEqual(v, v2) {
		t.Fatalf("round trip changed %+v into %+v", v, v2)
	}
}

func FuzzParseAddLeafRequest(f *testing.F) {
	asciiSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		roundTrip(t, in, ParseAddLeafRequest, (*AddLeafRequest).MarshalASCII)
	})
}

func FuzzParseSignedTreeHead(f *testing.F) {
	asciiSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		roundTrip(t, in, ParseSignedTreeHead, (*SignedTreeHead).MarshalASCII)
	})
}

func FuzzParseCosignedTreeHead(f *testing.F) {
	asciiSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		roundTrip(t, in, ParseCosignedTreeHead, (*CosignedTreeHead).MarshalASCII)
	})
}

func FuzzParseLeaves(f *testing.F) {
	asciiSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		roundTrip(t, in, ParseLeavesASCII, func(l *[]Leaf) []byte { return MarshalLeavesASCII(*l) })
	})
}

func FuzzParseInclusionProof(f *testing.F) {
	asciiSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		roundTrip(t, in, ParseInclusionProof, (*InclusionProof).MarshalASCII)
	})
}

func FuzzParseConsistencyProof(f *testing.F) {
	asciiSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		roundTrip(t, in, ParseConsistencyProof, (*ConsistencyProof).MarshalASCII)
	})
}

func FuzzParseLeafBinary(f *testing.F) {
	f.Add(make([]byte, LeafSize))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, in []byte) {
		roundTrip(t, in, ParseLeafBinary, (*Leaf).MarshalBinary)
	})
}

func FuzzParseSubmitToken(f *testing.F) {
	f.Add("example.org " + sig1)
	f.Add("a b")
	f.Fuzz(func(t *testing.T, in string) {
		roundTrip(t, []byte(in), func(b []byte) (SubmitToken, error) { return ParseSubmitToken(string(b)) },
			func(tok *SubmitToken) []byte { return []byte(tok.String()) })
	})
}

func noteSeeds(f *testing.F) {
	s := seedSigner(f, 1)
	th := TreeHead{Size: 5, RootHash: Hash{1}}
	sth, _ := th.Sign(s)
	note := sth.SignedNote(s.Public())
	c, _ := th.Cosign(seedSigner(f, 3), Origin(s.Public()), 1700000000)
	acr := AddCheckpointRequest{OldSize: 3, Proof: []Hash{{1}, {2}}, Note: note}
	addSeeds(f, string(note), string(CosignatureLine("witness.example.org", seedSigner(f, 3).Public(), &c)),
		string(acr.MarshalBinary()), "old 0\n\n", "\u2014 a AAAAAAAA\n", "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
}

func FuzzParseNote(f *testing.F) {
	noteSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		n, err := ParseNote(in)
		if err != nil {
			return
		}
		// Re-assemble the note from its parts: it must be the input.
		out := append(append([]byte{}, n.Text...), '\n')
		for _, s := range n.Signatures {
			out = appendNoteSignature(out, s.Name, append(s.KeyID[:], s.Blob...))
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("note %q re-assembles as %q", in, out)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	noteSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		origin, th, err := ParseCheckpoint(in)
		if err != nil {
			return
		}
		if out := th.Checkpoint(origin); !bytes.Equal(out, in) {
			t.Fatalf("checkpoint %q re-encodes as %q", in, out)
		}
	})
}

func FuzzParseWitnessCosignature(f *testing.F) {
	noteSeeds(f)
	w := seedSigner(f, 3).Public()
	f.Fuzz(func(t *testing.T, in []byte) {
		c, name, err := ParseWitnessCosignature(in, w)
		if err != nil {
			return
		}
		line := CosignatureLine(name, w, &c)
		if !bytes.Contains(in, line) {
			t.Fatalf("cosignature line %q is not in the response %q", line, in)
		}
		if back, backName, err := ParseWitnessCosignature(line, w); err != nil || back != c || backName != name {
			t.Fatalf("cosignature line %q does not round trip: %v", line, err)
		}
	})
}

func FuzzParseAddCheckpointRequest(f *testing.F) {
	noteSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		roundTrip(t, in, ParseAddCheckpointRequest, (*AddCheckpointRequest).MarshalBinary)
	})
}

func FuzzParseMLDSAWitnessCosignature(f *testing.F) {
	noteSeeds(f)
	key := bytes.Repeat([]byte{5}, MLDSA44PublicKeySize)
	c := MLDSACosignature{Name: "pq.example/w", Timestamp: 1700000000, Signature: bytes.Repeat([]byte{1}, MLDSA44SignatureSize)}
	f.Add(c.Line(key))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := ParseMLDSAWitnessCosignature(in, key)
		if err != nil {
			return
		}
		line := c.Line(key)
		if !bytes.Contains(in, line) {
			t.Fatalf("cosignature line %q is not in the response %q", line, in)
		}
		back, err := ParseMLDSAWitnessCosignature(line, key)
		if err != nil || back.Name != c.Name || back.Timestamp != c.Timestamp || !bytes.Equal(back.Signature, c.Signature) {
			t.Fatalf("cosignature line %q does not round trip: %v", line, err)
		}
	})
}
