// Package deploy holds the example deployments; its tests keep them buildable as shipped.
package deploy

import (
	"bytes"
	"fmt"
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
			for _, k := range []string{"server", "state_dir", "tls_ca", "tls_cert", "tls_key", "join_token_file"} {
				if cfg[k] == nil {
					t.Errorf("agent.yaml in %s has no %s", key, k)
				}
			}
			// The enrolled key and certificate are the node's own: they live on its state
			// directory, not in a shared Secret.
			for _, k := range []string{"tls_cert", "tls_key"} {
				if p, _ := cfg[k].(string); !strings.HasPrefix(p, cfg["state_dir"].(string)+"/") {
					t.Errorf("agent.yaml %s = %q, want it under state_dir %v", k, p, cfg["state_dir"])
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
	checkEnrollment(t, ds)
	checkServerReplicas(t, objects)
}

// checkServerReplicas: the server runs as three replicas reading the store's DSN from the
// flasher-store Secret, each with its own lease owner name.
func checkServerReplicas(t *testing.T, objects map[string]map[string]any) {
	t.Helper()
	dep, ok := objects["Deployment/flasher-server"]
	if !ok {
		t.Fatalf("no Deployment flasher-server among %v", keys(objects))
	}
	var d struct {
		Spec struct {
			Replicas int
			Template struct {
				Spec struct {
					Containers []struct {
						Env []struct {
							Name      string
							ValueFrom struct {
								SecretKeyRef struct{ Name, Key string } `yaml:"secretKeyRef"`
								FieldRef     struct {
									FieldPath string `yaml:"fieldPath"`
								} `yaml:"fieldRef"`
							} `yaml:"valueFrom"`
						}
					}
				}
			}
		}
	}
	b, _ := yaml.Marshal(dep)
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas != 3 {
		t.Errorf("flasher-server replicas = %d, want 3", d.Spec.Replicas)
	}
	env := map[string]string{}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			env[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key + e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["FLASHER_STORE"] != "flasher-store/dsn" {
		t.Errorf("FLASHER_STORE comes from %q, want the Secret flasher-store key dsn", env["FLASHER_STORE"])
	}
	if env["FLASHER_WORKER"] != "/metadata.name" {
		t.Errorf("FLASHER_WORKER comes from %q, want the pod name", env["FLASHER_WORKER"])
	}
}

// checkEnrollment: every pod enrolls with the one batch token Secret and names its server by
// its node; no Secret per node, no shared certificate.
func checkEnrollment(t *testing.T, ds map[string]any) {
	t.Helper()
	var podSpec struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Env []struct {
							Name      string
							ValueFrom struct {
								FieldRef struct {
									FieldPath string `yaml:"fieldPath"`
								} `yaml:"fieldRef"`
							} `yaml:"valueFrom"`
						}
					}
					Volumes []struct {
						Name   string
						Secret *struct {
							SecretName string `yaml:"secretName"`
						}
						Projected *struct {
							Sources []map[string]any
						}
					}
				}
			}
		}
	}
	b, _ := yaml.Marshal(ds)
	if err := yaml.Unmarshal(b, &podSpec); err != nil {
		t.Fatal(err)
	}
	spec := podSpec.Spec.Template.Spec
	serverID := false
	for _, c := range spec.Containers {
		for _, e := range c.Env {
			if e.Name == "FLASHER_SERVER_ID" && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
				serverID = true
			}
		}
	}
	if !serverID {
		t.Error("the agent does not take FLASHER_SERVER_ID from the node name")
	}
	var secrets []string
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			secrets = append(secrets, v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if s, ok := src["secret"].(map[string]any); ok {
					secrets = append(secrets, fmt.Sprint(s["name"]))
				}
			}
		}
	}
	if len(secrets) != 1 || secrets[0] != "flasher-join-token" {
		t.Errorf("the DaemonSet mounts Secrets %v, want only the batch join token flasher-join-token", secrets)
	}
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
