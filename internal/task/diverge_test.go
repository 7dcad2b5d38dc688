package task

import (
	"strings"
	"testing"
)

func TestDivergence(t *testing.T) {
	bmc := Step{Component: "BMC", FromVersion: "1.0", ToVersion: "2.0", Checksum: "sha256:aa", Method: MethodOutOfBand}
	nic1 := Step{Component: "NIC", Serial: "N1", FromVersion: "5", ToVersion: "6", Checksum: "sha256:bb", Method: MethodOutOfBand}
	nic2 := nic1
	nic2.Serial = "N2"
	shown := &Plan{Steps: []Step{bmc, nic1, nic2}}
	with := func(f func(p *Plan)) *Plan {
		p := &Plan{Steps: append([]Step(nil), shown.Steps...)}
		f(p)
		return p
	}
	tests := []struct {
		name string
		live *Plan
		want []string // one substring per departure; none means no divergence
	}{
		{"same plan", with(func(*Plan) {}), nil},
		{"another order and from-version", with(func(p *Plan) {
			p.Steps[0], p.Steps[2] = p.Steps[2], p.Steps[0]
			p.Steps[2].FromVersion = "1.1"
		}), nil},
		{"a step done meanwhile is skipped at its version", with(func(p *Plan) {
			p.Steps = p.Steps[1:]
			p.Skipped = []Skip{{Component: "BMC", Version: "2.0", Reason: "already at version"}}
		}), nil},
		{"a component not reported", with(func(p *Plan) { p.Steps = p.Steps[:2] }),
			[]string{"NIC N2 5→6 dropped: the component is not reported"}},
		{"skipped at another version", with(func(p *Plan) {
			p.Steps = p.Steps[1:]
			p.Skipped = []Skip{{Component: "BMC", Version: "3.0", Reason: "already newer"}}
		}), []string{"BMC 1.0→2.0 dropped: already newer"}},
		{"another version", with(func(p *Plan) { p.Steps[1].ToVersion = "7" }), []string{"NIC N1 5→6 changed: now NIC N1 5→7"}},
		{"another image", with(func(p *Plan) { p.Steps[0].Checksum = "sha256:cc" }), []string{"BMC 1.0→2.0 changed: another image"}},
		{"another method", with(func(p *Plan) { p.Steps[0].Method = MethodInBand }), []string{"changed: method IN_BAND"}},
		{"a step not shown", with(func(p *Plan) {
			p.Steps = append(p.Steps, Step{Component: "BIOS", FromVersion: "a", ToVersion: "b"})
		}), []string{"BIOS a→b added"}},
		{"a serial only one side knows, for a single instance", with(func(p *Plan) {
			p.Steps[0].Serial = "BMC-SERIAL"
		}), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := shown.Divergence(tc.live)
			if len(got) != len(tc.want) {
				t.Fatalf("divergence %q, want %d departures %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("departure %d %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
	if s := shown.Summary(); s != "BMC 1.0→2.0, NIC N1 5→6, NIC N2 5→6" {
		t.Errorf("summary %q", s)
	}
	if s := (&Plan{}).Summary(); s != "no steps" {
		t.Errorf("empty summary %q", s)
	}
}
