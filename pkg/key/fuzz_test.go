package key

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"
)

func FuzzParsePublicKey(f *testing.F) {
	_, pub := seed01(f)
	line, err := MarshalPublicKey(pub, "comment")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(line),
		strings.TrimSpace(string(line)),
		seed01PubHex,
		seed01PubHex + "\n",
		strings.ToUpper(seed01PubHex),
		seed01PubHex[:63],
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI",
		"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ comment",
		"ssh-ed25519",
		"",
		"\n\n",
		"garbage",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pk, err := ParsePublicKey(data)
		if err != nil {
			return
		}
		// Whatever parses re-encodes to both accepted forms, which parse back to the same key.
		out, err := MarshalPublicKey(pk, "x")
		if err != nil {
			t.Fatal(err)
		}
		for _, enc := range [][]byte{out, []byte(pk.String())} {
			again, err := ParsePublicKey(enc)
			if err != nil {
				t.Fatalf("re-parse %q: %v", enc, err)
			}
			if again != pk {
				t.Fatalf("re-parse %q gave %s, want %s", enc, again, pk)
			}
		}
	})
}

func FuzzParsePrivateKey(f *testing.F) {
	priv, _ := seed01(f)
	good, err := MarshalPrivateKey(priv, "comment")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(bytes.Replace(good, []byte("OPENSSH PRIVATE KEY"), []byte("PRIVATE KEY"), 2))
	f.Add([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"))
	f.Add([]byte(""))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParsePrivateKey(data)
		if err != nil {
			return
		}
		if len(k) != ed25519.PrivateKeySize || !bytes.Equal(ed25519.NewKeyFromSeed(k.Seed()), k) {
			t.Fatalf("accepted an inconsistent key of %d bytes", len(k))
		}
		out, err := MarshalPrivateKey(k, "")
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParsePrivateKey(out)
		if err != nil || !bytes.Equal(again, k) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
