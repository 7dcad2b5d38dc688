package firmware

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestParseChecksum(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in   string
		want string // canonical form; "" means ErrBadChecksum
	}{
		{"sha256:" + hex64, "sha256:" + hex64},
		{"SHA256:" + strings.ToUpper(hex64), "sha256:" + hex64},
		{"sha256:" + strings.ToUpper(hex64), "sha256:" + hex64},
		{"sha512:" + strings.Repeat("0f", 64), "sha512:" + strings.Repeat("0f", 64)},
		{"md5:" + strings.Repeat("12", 16), "md5:" + strings.Repeat("12", 16)},
		{"sha256:" + hex64[:62], ""},
		{"sha256:" + hex64 + "00", ""},
		{"sha256:" + hex64[:62] + "zz", ""},
		{"md5:" + hex64, ""},
		{"sha1:" + strings.Repeat("12", 20), ""},
		{"crc32:deadbeef", ""},
		{hex64, ""},
		{"", ""},
		{" sha256:" + hex64, ""},
		{"sha256:" + hex64 + " ", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseChecksum(tc.in)
			if tc.want == "" {
				if !errors.Is(err, ErrBadChecksum) {
					t.Fatalf("err = %v, want ErrBadChecksum", err)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("got %q, %v; want %q", got.String(), err, tc.want)
			}
		})
	}
}

func TestChecksumMatches(t *testing.T) {
	sum := sha256.Sum256([]byte("firmware"))
	// Copied from a vendor page in upper case: parsed to the same checksum.
	c, err := ParseChecksum("SHA256:" + strings.ToUpper(hex.EncodeToString(sum[:])))
	if err != nil {
		t.Fatal(err)
	}
	h := c.NewHash()
	h.Write([]byte("firmware"))
	if !c.Matches(h) {
		t.Fatalf("%s does not match its own bytes", c)
	}
	h = c.NewHash()
	h.Write([]byte("firmwarE"))
	if c.Matches(h) {
		t.Fatalf("%s matches other bytes", c)
	}
}

func FuzzParseChecksum(f *testing.F) {
	for _, s := range []string{
		"sha256:" + strings.Repeat("ab", 32),
		"sha512:" + strings.Repeat("CD", 64),
		"md5:" + strings.Repeat("01", 16),
		"md5:", ":", "sha256:zz", "", "crc32:deadbeef",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseChecksum(s)
		if err != nil {
			if !errors.Is(err, ErrBadChecksum) {
				t.Fatalf("error %v is not ErrBadChecksum", err)
			}
			return
		}
		if size := c.Algo.Size(); size == 0 || len(c.Hex) != 2*size || strings.ToLower(c.Hex) != c.Hex {
			t.Fatalf("accepted %q as %+v", s, c)
		}
		again, err := ParseChecksum(c.String())
		if err != nil || again != c {
			t.Fatalf("canonical form %q does not round-trip: %+v, %v", c.String(), again, err)
		}
		if !strings.EqualFold(s, c.String()) {
			t.Fatalf("%q parsed to a different checksum %q", s, c.String())
		}
	})
}
