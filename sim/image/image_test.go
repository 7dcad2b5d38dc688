package image

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	h := Header{Component: "BIOS", Vendor: "Dell Inc.", Model: "PowerEdge R6515", Version: "2.19.1"}
	for _, script := range []string{"", "#!/bin/bash\necho hi\n", "echo no shebang"} {
		img := Make(h, 4096, script)
		if len(img) < 4096 {
			t.Fatalf("size %d < 4096", len(img))
		}
		got, err := Parse(bytes.NewReader(img))
		if err != nil {
			t.Fatalf("Parse(%q): %v", script, err)
		}
		if got != h {
			t.Fatalf("got %+v, want %+v", got, h)
		}
		if !bytes.Equal(img, Make(h, 4096, script)) {
			t.Fatal("Make is not deterministic")
		}
	}
}

func TestParseRejects(t *testing.T) {
	for name, data := range map[string]string{
		"empty":      "",
		"random":     "MZ\x90\x00 garbage",
		"no version": "#!/bin/sh\n" + Magic + "\n# component: BIOS\n# end\n",
		"truncated":  "#!/bin/sh\n" + Magic + "\n# component: BIOS\n",
	} {
		if _, err := Parse(bytes.NewReader([]byte(data))); !errors.Is(err, ErrNotImage) {
			t.Errorf("%s: err = %v, want ErrNotImage", name, err)
		}
	}
}
