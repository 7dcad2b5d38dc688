package artifact

import (
	"errors"
	"net/url"
	"testing"
)

func TestAllowListPatterns(t *testing.T) {
	allow := AllowList{
		Schemes: []string{"https", "http"},
		Hosts: []string{
			"firmware.example.com",
			"*.mirror.example.org",
			"pinned.example.net:8443",
			"10.20.0.0/16",
			"192.0.2.7:8080",
			"fd00::/8",
			"[2001:db8::1]:80",
		},
	}
	rules, err := allow.compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url     string
		allowed bool
	}{
		{"https://firmware.example.com/bios.bin", true},
		{"https://FIRMWARE.example.com./bios.bin", true},
		{"http://firmware.example.com:9000/bios.bin", true},
		{"https://evil-firmware.example.com/bios.bin", false},
		{"https://firmware.example.com.evil.io/bios.bin", false},
		{"https://a.mirror.example.org/x", true},
		{"https://a.b.mirror.example.org/x", true},
		{"https://mirror.example.org/x", false},
		{"https://xmirror.example.org/x", false},
		{"https://pinned.example.net:8443/x", true},
		{"https://pinned.example.net/x", false},
		{"http://10.20.3.4/x", true},
		{"http://10.21.3.4/x", false},
		{"http://[::ffff:10.20.3.4]/x", true},
		{"http://192.0.2.7:8080/x", true},
		{"http://192.0.2.7/x", false},
		{"http://[fd12::5]:9/x", true},
		{"http://[2001:db8::1]/x", true},
		{"https://[2001:db8::1]/x", false},
		{"http://169.254.169.254/latest/meta-data", false},
		{"ftp://firmware.example.com/x", false},
		{"file:///etc/passwd", false},
		{"https:///nohost", false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			err = rules.check(u)
			if got := err == nil; got != tc.allowed {
				t.Fatalf("allowed = %v (%v), want %v", got, err, tc.allowed)
			}
			if err != nil && !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("err = %v, want ErrNotAllowed", err)
			}
		})
	}
}

func TestAllowListRejectsBadPatterns(t *testing.T) {
	for _, tc := range []AllowList{
		{Schemes: []string{"ftp"}},
		{Schemes: []string{"https"}, Hosts: []string{""}},
		{Schemes: []string{"https"}, Hosts: []string{"10.0.0.0/33"}},
		{Schemes: []string{"https"}, Hosts: []string{"*."}},
		{Schemes: []string{"https"}, Hosts: []string{"a.*.example.com"}},
		{Schemes: []string{"https"}, Hosts: []string{"host:99999"}},
		{Schemes: []string{"https"}, Hosts: []string{"user@host"}},
	} {
		t.Run(fmtAllow(tc), func(t *testing.T) {
			if _, err := New(Config{Dir: t.TempDir(), MaxBytes: 1, Allow: tc}); err == nil {
				t.Fatal("New accepted a bad allowlist")
			}
		})
	}
}

func fmtAllow(a AllowList) string {
	if len(a.Hosts) == 0 {
		return "scheme " + a.Schemes[0]
	}
	return "host " + a.Hosts[0]
}
