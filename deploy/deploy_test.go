// Package deploy holds the example deployments; its tests keep them buildable as shipped.
package deploy

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestKustomizeBuilds renders deploy/kubernetes with kubectl's built-in kustomize and the default
// load restrictor, exactly as an operator would, and checks the objects it must contain.
func TestKustomizeBuilds(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", "kubernetes")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize deploy/kubernetes: %v\n%s", err, stderr.String())
	}

	objects := map[string]map[string]any{} // kind/name → object
	dec := yaml.NewDecoder(&stdout)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			break
		}
		meta, _ := obj["metadata"].(map[string]any)
		if ns, _ := meta["namespace"].(string); ns != "flasher" {
			t.Errorf("%v %v is in namespace %q, want flasher", obj["kind"], meta["name"], ns)
		}
		objects[obj["kind"].(string)+"/"+meta["name"].(string)] = obj
	}

	ds, ok := objects["DaemonSet/flasher-agent"]
	if !ok {
		t.Fatalf("no DaemonSet flasher-agent among %v", keys(objects))
	}
	var configMap string
	for key, obj := range objects {
		if strings.HasPrefix(key, "ConfigMap/flasher-agent-") {
			configMap = key[len("ConfigMap/"):]
			data, _ := obj["data"].(map[string]any)
			agent, _ := data["agent.yaml"].(string)
			var cfg map[string]any
			if err := yaml.Unmarshal([]byte(agent), &cfg); err != nil {
				t.Fatalf("agent.yaml in %s: %v", key, err)
			}
			for _, k := range []string{"server", "state_dir", "tls_ca"} {
				if cfg[k] == nil {
					t.Errorf("agent.yaml in %s has no %s", key, k)
				}
			}
		}
	}
	if configMap == "" {
		t.Fatalf("no generated ConfigMap flasher-agent-* among %v", keys(objects))
	}
	// The generated name carries a content hash; the DaemonSet must refer to that exact name.
	var rendered bytes.Buffer
	if err := yaml.NewEncoder(&rendered).Encode(ds); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rendered.String(), configMap) {
		t.Errorf("DaemonSet does not mount ConfigMap %s:\n%s", configMap, rendered.String())
	}
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
