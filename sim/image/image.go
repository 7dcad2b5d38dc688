// Package image defines the firmware image format the simulators understand: a short text
// header naming the component, vendor, model and version the image installs, followed by any
// payload. Simulated BMCs and host tools accept an image only for the component it names and
// install exactly the version it carries. The header lines are shell comments, so an image can
// also be an executable script (Dell update files are executed on the host).
package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Magic is the header line that marks a simulator image.
const Magic = "# flasher-sim-image v1"

// Header is what an image installs.
type Header struct {
	Component string
	Vendor    string
	Model     string
	Version   string
}

// ErrNotImage is returned by Parse for data that is not a simulator image.
var ErrNotImage = errors.New("not a flasher-sim firmware image")

// Make returns an image for h whose total size is at least size bytes. script, when not empty,
// is placed after the header as the image's executable body (it should start with the shebang
// line, which Make then puts first).
func Make(h Header, size int, script string) []byte {
	var b bytes.Buffer
	shebang, rest := "#!/bin/sh", ""
	if script != "" {
		if first, after, ok := strings.Cut(script, "\n"); ok && strings.HasPrefix(first, "#!") {
			shebang, rest = first, after
		} else {
			rest = script
		}
	}
	fmt.Fprintf(&b, "%s\n%s\n# component: %s\n# vendor: %s\n# model: %s\n# version: %s\n# end\n",
		shebang, Magic, h.Component, h.Vendor, h.Model, h.Version)
	b.WriteString(rest)
	if !strings.HasSuffix(rest, "\n") && rest != "" {
		b.WriteByte('\n')
	}
	b.WriteString("exit 0\n")
	for b.Len() < size {
		// Deterministic filler: the same header and size always give the same bytes (and checksum).
		b.WriteString("# padding ................................................................\n")
	}
	return b.Bytes()
}

// Parse reads the header of an image.
func Parse(r io.Reader) (Header, error) {
	var h Header
	sc := bufio.NewScanner(io.LimitReader(r, 4096))
	line := 0
	seenMagic := false
	for sc.Scan() {
		line++
		text := sc.Text()
		if line == 1 && strings.HasPrefix(text, "#!") {
			continue
		}
		if !seenMagic {
			if text != Magic {
				return h, ErrNotImage
			}
			seenMagic = true
			continue
		}
		if text == "# end" {
			if h.Component == "" || h.Version == "" {
				return h, fmt.Errorf("%w: header lacks component or version", ErrNotImage)
			}
			return h, nil
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(text, "# "), ": ")
		if !ok {
			return h, fmt.Errorf("%w: bad header line %q", ErrNotImage, text)
		}
		switch k {
		case "component":
			h.Component = v
		case "vendor":
			h.Vendor = v
		case "model":
			h.Model = v
		case "version":
			h.Version = v
		}
	}
	return h, ErrNotImage
}
