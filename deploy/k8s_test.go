package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-hq/switchboard/core/secret"
)

// The Kubernetes types below model only the fields the manifests use. They
// are decoded with KnownFields, so a misspelt field (readinesProbe) fails
// here instead of being dropped by a lenient parser; a new field means a new
// struct field here.

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type header struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type labelSelector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []yaml.Node       `yaml:"matchExpressions"`
}

// matches reports whether the selector selects a pod with labels.
func (s labelSelector) matches(labels map[string]string) bool {
	return len(s.MatchExpressions) == 0 && selects(s.MatchLabels, labels)
}

// selects reports whether a non-empty equality selector matches labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

type podTemplate struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     podSpec    `yaml:"spec"`
}

type podSpec struct {
	RestartPolicy                 string              `yaml:"restartPolicy"`
	AutomountServiceAccountToken  *bool               `yaml:"automountServiceAccountToken"`
	EnableServiceLinks            *bool               `yaml:"enableServiceLinks"`
	TerminationGracePeriodSeconds *int                `yaml:"terminationGracePeriodSeconds"`
	ServiceAccountName            string              `yaml:"serviceAccountName"`
	SecurityContext               *podSecurityContext `yaml:"securityContext"`
	TopologySpreadConstraints     []struct {
		MaxSkew           int           `yaml:"maxSkew"`
		TopologyKey       string        `yaml:"topologyKey"`
		WhenUnsatisfiable string        `yaml:"whenUnsatisfiable"`
		LabelSelector     labelSelector `yaml:"labelSelector"`
	} `yaml:"topologySpreadConstraints"`
	InitContainers []container `yaml:"initContainers"`
	Containers     []container `yaml:"containers"`
	Volumes        []struct {
		Name     string `yaml:"name"`
		EmptyDir *struct {
			SizeLimit string `yaml:"sizeLimit"`
			Medium    string `yaml:"medium"`
		} `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type podSecurityContext struct {
	RunAsNonRoot   *bool  `yaml:"runAsNonRoot"`
	RunAsUser      *int64 `yaml:"runAsUser"`
	RunAsGroup     *int64 `yaml:"runAsGroup"`
	FSGroup        *int64 `yaml:"fsGroup"`
	SeccompProfile *struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

type containerSecurityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	Capabilities             *struct {
		Drop []string `yaml:"drop"`
		Add  []string `yaml:"add"`
	} `yaml:"capabilities"`
}

type container struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	ImagePullPolicy string   `yaml:"imagePullPolicy"`
	Command         []string `yaml:"command"`
	Args            []string `yaml:"args"`
	Env             []envVar `yaml:"env"`
	EnvFrom         []struct {
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
			Exec *struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	SecurityContext *containerSecurityContext `yaml:"securityContext"`
	VolumeMounts    []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath  string `yaml:"fieldPath"`
			APIVersion string `yaml:"apiVersion"`
		} `yaml:"fieldRef"`
		ResourceFieldRef *struct {
			Resource      string `yaml:"resource"`
			ContainerName string `yaml:"containerName"`
			Divisor       string `yaml:"divisor"`
		} `yaml:"resourceFieldRef"`
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type probe struct {
	HTTPGet *struct {
		Path   string `yaml:"path"`
		Port   string `yaml:"port"` // a number or a port name
		Scheme string `yaml:"scheme"`
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	SuccessThreshold    int `yaml:"successThreshold"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

// port resolves a probe or Service port (number or name) against c.
func (c container) port(p string) (int, bool) {
	for _, cp := range c.Ports {
		if cp.Name == p || strconv.Itoa(cp.ContainerPort) == p {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

func (c container) env(name string) (envVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return envVar{}, false
}

type workloadSpec struct {
	ServiceName          string        `yaml:"serviceName"`
	Replicas             *int          `yaml:"replicas"`
	PodManagementPolicy  string        `yaml:"podManagementPolicy"`
	UpdateStrategy       yaml.Node     `yaml:"updateStrategy"`
	Strategy             yaml.Node     `yaml:"strategy"`
	Selector             labelSelector `yaml:"selector"`
	Template             podTemplate   `yaml:"template"`
	VolumeClaimTemplates []yaml.Node   `yaml:"volumeClaimTemplates"`
}

type workload struct {
	header `yaml:",inline"`
	Spec   workloadSpec `yaml:"spec"`
}

type job struct {
	header `yaml:",inline"`
	Spec   struct {
		BackoffLimit            *int        `yaml:"backoffLimit"`
		ActiveDeadlineSeconds   *int        `yaml:"activeDeadlineSeconds"`
		TTLSecondsAfterFinished *int        `yaml:"ttlSecondsAfterFinished"`
		Template                podTemplate `yaml:"template"`
	} `yaml:"spec"`
}

type service struct {
	header `yaml:",inline"`
	Spec   struct {
		Type                     string            `yaml:"type"`
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
			Protocol   string `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type hpa struct {
	header `yaml:",inline"`
	Spec   struct {
		ScaleTargetRef struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Name       string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas *int `yaml:"minReplicas"`
		MaxReplicas int  `yaml:"maxReplicas"`
		Metrics     []struct {
			Type     string `yaml:"type"`
			Resource *struct {
				Name   string `yaml:"name"`
				Target struct {
					Type               string `yaml:"type"`
					AverageUtilization *int   `yaml:"averageUtilization"`
					AverageValue       string `yaml:"averageValue"`
				} `yaml:"target"`
			} `yaml:"resource"`
		} `yaml:"metrics"`
		Behavior yaml.Node `yaml:"behavior"`
	} `yaml:"spec"`
}

type pdb struct {
	header `yaml:",inline"`
	Spec   struct {
		MinAvailable   string        `yaml:"minAvailable"`
		MaxUnavailable string        `yaml:"maxUnavailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type secretObject struct {
	header     `yaml:",inline"`
	Type       string            `yaml:"type"`
	StringData map[string]string `yaml:"stringData"`
	Data       map[string]string `yaml:"data"`
}

type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Resources  []string `yaml:"resources"`
	Images     []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
		Digest  string `yaml:"digest"`
	} `yaml:"images"`
}

// manifests is every object under k8s/, decoded by kind.
type manifests struct {
	files     map[string]bool // yaml files in k8s/ other than the kustomization
	kust      kustomization
	workloads []workload // StatefulSets and Deployments: long-running nodes
	jobs      []job
	services  []service
	hpas      []hpa
	pdbs      []pdb
	secrets   []secretObject
}

// strict decodes one document into out, rejecting fields out does not know.
func strict(n *yaml.Node, out any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(out)
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	m := manifests{files: map[string]bool{}}
	paths, err := filepath.Glob(filepath.Join("k8s", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		base := filepath.Base(p)
		if ext := filepath.Ext(base); ext != ".yaml" && ext != ".yml" {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs := decodeAll(t, p, b)
		if base == "kustomization.yaml" {
			if len(docs) != 1 {
				t.Fatalf("%s: %d documents, want 1", p, len(docs))
			}
			if err := strict(docs[0], &m.kust); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			continue
		}
		m.files[base] = true
		if len(docs) == 0 {
			t.Errorf("%s holds no object", p)
		}
		for i, d := range docs {
			var h struct {
				Kind string `yaml:"kind"`
			}
			if err := d.Decode(&h); err != nil {
				t.Fatalf("%s #%d: %v", p, i, err)
			}
			var err error
			switch h.Kind {
			case "StatefulSet", "Deployment":
				var w workload
				if err = strict(d, &w); err == nil && len(w.Spec.Template.Spec.Containers) == 0 {
					err = errors.New("pod template has no containers")
				}
				m.workloads = append(m.workloads, w)
			case "Job":
				var j job
				err = strict(d, &j)
				m.jobs = append(m.jobs, j)
			case "Service":
				var s service
				err = strict(d, &s)
				m.services = append(m.services, s)
			case "HorizontalPodAutoscaler":
				var h hpa
				err = strict(d, &h)
				m.hpas = append(m.hpas, h)
			case "PodDisruptionBudget":
				var b pdb
				err = strict(d, &b)
				m.pdbs = append(m.pdbs, b)
			case "Secret":
				var s secretObject
				err = strict(d, &s)
				m.secrets = append(m.secrets, s)
			default:
				err = fmt.Errorf("kind %q is not modelled by this test; add it", h.Kind)
			}
			if err != nil {
				t.Fatalf("%s #%d (%s): %v", p, i, h.Kind, err)
			}
		}
	}
	return m
}

// headers lists every object's header, for checks that span kinds.
func (m manifests) headers() []header {
	var hs []header
	for _, w := range m.workloads {
		hs = append(hs, w.header)
	}
	for _, j := range m.jobs {
		hs = append(hs, j.header)
	}
	for _, s := range m.services {
		hs = append(hs, s.header)
	}
	for _, h := range m.hpas {
		hs = append(hs, h.header)
	}
	for _, p := range m.pdbs {
		hs = append(hs, p.header)
	}
	for _, s := range m.secrets {
		hs = append(hs, s.header)
	}
	return hs
}

// podTemplates lists every pod template with the object it belongs to.
func (m manifests) podTemplates() map[string]podTemplate {
	out := map[string]podTemplate{}
	for _, w := range m.workloads {
		out[w.Kind+"/"+w.Metadata.Name] = w.Spec.Template
	}
	for _, j := range m.jobs {
		out["Job/"+j.Metadata.Name] = j.Spec.Template
	}
	return out
}

func (m manifests) workload(kind, name string) (workload, bool) {
	for _, w := range m.workloads {
		if w.Kind == kind && w.Metadata.Name == name {
			return w, true
		}
	}
	return workload{}, false
}

func TestKubernetes(t *testing.T) {
	m := loadManifests(t)
	if len(m.workloads) == 0 {
		t.Fatal("no StatefulSet or Deployment under k8s/")
	}

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"kustomization lists every manifest and nothing else", func(t *testing.T) {
			if m.kust.Kind != "Kustomization" {
				t.Errorf("kustomization kind %q", m.kust.Kind)
			}
			listed := map[string]bool{}
			for _, r := range m.kust.Resources {
				if listed[r] {
					t.Errorf("%s listed twice", r)
				}
				listed[r] = true
				if !m.files[r] {
					t.Errorf("kustomization lists %s, which is not a manifest in k8s/", r)
				}
			}
			for f := range m.files {
				if !listed[f] {
					t.Errorf("k8s/%s is not in kustomization resources", f)
				}
			}
		}},
		{"manifests are namespace-agnostic", func(t *testing.T) {
			for _, h := range m.headers() {
				if h.Metadata.Namespace != "" {
					t.Errorf("%s/%s hard-codes namespace %q", h.Kind, h.Metadata.Name, h.Metadata.Namespace)
				}
			}
		}},
		{"API versions are the stable ones", func(t *testing.T) {
			want := map[string]string{
				"StatefulSet": "apps/v1", "Deployment": "apps/v1", "Job": "batch/v1", "Service": "v1",
				"Secret": "v1", "HorizontalPodAutoscaler": "autoscaling/v2", "PodDisruptionBudget": "policy/v1",
			}
			for _, h := range m.headers() {
				if h.APIVersion != want[h.Kind] {
					t.Errorf("%s/%s apiVersion %q, want %q", h.Kind, h.Metadata.Name, h.APIVersion, want[h.Kind])
				}
			}
		}},
		{"workload selectors match their own pods", func(t *testing.T) {
			for _, w := range m.workloads {
				if !w.Spec.Selector.matches(w.Spec.Template.Metadata.Labels) {
					t.Errorf("%s/%s selector %v does not match its pod labels %v", w.Kind, w.Metadata.Name, w.Spec.Selector.MatchLabels, w.Spec.Template.Metadata.Labels)
				}
			}
		}},
		{"node ids come from the StatefulSet ordinal", func(t *testing.T) {
			for _, w := range m.workloads {
				if w.Kind != "StatefulSet" {
					t.Errorf("%s/%s: nodes need a unique node id each; only a StatefulSet gives pods an ordinal", w.Kind, w.Metadata.Name)
				}
				c := w.Spec.Template.Spec.Containers[0]
				e, ok := c.env("SWITCHBOARD_NODE_ID")
				if !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil ||
					e.ValueFrom.FieldRef.FieldPath != "metadata.labels['apps.kubernetes.io/pod-index']" {
					t.Errorf("%s/%s: SWITCHBOARD_NODE_ID is not taken from the pod-index label", w.Kind, w.Metadata.Name)
				}
				// The explicit flag makes a missing label fail to parse
				// instead of falling back to node 0 on every pod.
				if !slices.Contains(c.Args, "--node-id=$(SWITCHBOARD_NODE_ID)") {
					t.Errorf("%s/%s: args %q do not pass --node-id=$(SWITCHBOARD_NODE_ID)", w.Kind, w.Metadata.Name, c.Args)
				}
				if len(c.Args) == 0 || c.Args[0] != "serve" {
					t.Errorf("%s/%s: args %q do not run serve", w.Kind, w.Metadata.Name, c.Args)
				}
			}
			for _, j := range m.jobs {
				for _, c := range j.Spec.Template.Spec.Containers {
					if _, ok := c.env("SWITCHBOARD_NODE_ID"); ok {
						t.Errorf("Job/%s sets SWITCHBOARD_NODE_ID: admin commands must keep the reserved id", j.Metadata.Name)
					}
				}
			}
		}},
		{"node containers are probed on their port", func(t *testing.T) {
			for _, w := range m.workloads {
				for _, c := range w.Spec.Template.Spec.Containers {
					where := w.Kind + "/" + w.Metadata.Name + "/" + c.Name
					for _, p := range []struct {
						kind string
						pr   *probe
						path string
					}{
						{"startupProbe", c.StartupProbe, "/healthz"},
						{"livenessProbe", c.LivenessProbe, "/healthz"},
						{"readinessProbe", c.ReadinessProbe, "/readyz"},
					} {
						if p.pr == nil || p.pr.HTTPGet == nil {
							t.Errorf("%s: no HTTP %s", where, p.kind)
							continue
						}
						if p.pr.HTTPGet.Path != p.path {
							t.Errorf("%s: %s path %q, want %q", where, p.kind, p.pr.HTTPGet.Path, p.path)
						}
						if port, ok := c.port(p.pr.HTTPGet.Port); !ok || port != listenPort {
							t.Errorf("%s: %s port %q is not container port %d", where, p.kind, p.pr.HTTPGet.Port, listenPort)
						}
					}
					if !slices.Contains(c.Args, fmt.Sprintf("--addr=0.0.0.0:%d", listenPort)) {
						if e, _ := c.env("SWITCHBOARD_ADDR"); e.Value != fmt.Sprintf("0.0.0.0:%d", listenPort) {
							t.Errorf("%s: does not listen on 0.0.0.0:%d", where, listenPort)
						}
					}
				}
			}
		}},
		{"nodes stop taking traffic before SIGTERM and get time to drain", func(t *testing.T) {
			for _, w := range m.workloads {
				spec := w.Spec.Template.Spec
				for _, c := range spec.Containers {
					where := w.Kind + "/" + w.Metadata.Name + "/" + c.Name
					if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || (c.Lifecycle.PreStop.Sleep == nil && c.Lifecycle.PreStop.Exec == nil) {
						t.Errorf("%s: no preStop hook", where)
						continue
					}
					pause := 0
					if s := c.Lifecycle.PreStop.Sleep; s != nil {
						pause = s.Seconds
					}
					grace := 30 // Kubernetes' default
					if spec.TerminationGracePeriodSeconds != nil {
						grace = *spec.TerminationGracePeriodSeconds
					}
					if need := pause + int(drainBudget.Seconds()); grace < need {
						t.Errorf("%s: terminationGracePeriodSeconds %d < preStop %ds + %s drain", where, grace, pause, drainBudget)
					}
				}
			}
		}},
		{"every container has resources and runs locked down", func(t *testing.T) {
			for owner, tpl := range m.podTemplates() {
				pod := tpl.Spec
				podNonRoot := pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot
				if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
					t.Errorf("%s: mounts a service account token it never uses", owner)
				}
				for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
					where := owner + "/" + c.Name
					for _, r := range []string{"cpu", "memory"} {
						if c.Resources.Requests[r] == "" {
							t.Errorf("%s: no %s request", where, r)
						}
					}
					if c.Resources.Limits["memory"] == "" {
						t.Errorf("%s: no memory limit", where)
					}
					sc := c.SecurityContext
					if sc == nil {
						t.Errorf("%s: no securityContext", where)
						continue
					}
					nonRoot := podNonRoot || (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot)
					if !nonRoot || (sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot) {
						t.Errorf("%s: not runAsNonRoot", where)
					}
					if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
						t.Errorf("%s: root filesystem is writable", where)
					}
					if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
						t.Errorf("%s: allows privilege escalation", where)
					}
					if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
						t.Errorf("%s: capabilities not dropped to none", where)
					}
				}
			}
		}},
		{"containers run the image kustomize sets", func(t *testing.T) {
			names := map[string]bool{}
			for _, img := range m.kust.Images {
				names[img.Name] = true
			}
			for owner, tpl := range m.podTemplates() {
				for _, c := range tpl.Spec.Containers {
					if !names[c.Image] {
						t.Errorf("%s/%s: image %q is not in kustomization images %v", owner, c.Name, c.Image, names)
					}
				}
			}
		}},
		{"services select node pods and reach their port", func(t *testing.T) {
			if len(m.services) == 0 {
				t.Fatal("no Service")
			}
			for _, s := range m.services {
				var target *workload
				for i, w := range m.workloads {
					if selects(s.Spec.Selector, w.Spec.Template.Metadata.Labels) {
						target = &m.workloads[i]
					}
				}
				if target == nil {
					t.Errorf("Service/%s selector %v matches no workload's pods", s.Metadata.Name, s.Spec.Selector)
					continue
				}
				for _, j := range m.jobs {
					if selects(s.Spec.Selector, j.Spec.Template.Metadata.Labels) {
						t.Errorf("Service/%s also selects Job/%s pods", s.Metadata.Name, j.Metadata.Name)
					}
				}
				c := target.Spec.Template.Spec.Containers[0]
				for _, p := range s.Spec.Ports {
					if port, ok := c.port(p.TargetPort); !ok || port != listenPort {
						t.Errorf("Service/%s port %s targets %q, not container port %d", s.Metadata.Name, p.Name, p.TargetPort, listenPort)
					}
				}
			}
		}},
		{"StatefulSets name an existing headless Service", func(t *testing.T) {
			for _, w := range m.workloads {
				if w.Kind != "StatefulSet" {
					continue
				}
				found := false
				for _, s := range m.services {
					if s.Metadata.Name == w.Spec.ServiceName {
						found = true
						if s.Spec.ClusterIP != "None" {
							t.Errorf("Service/%s governs StatefulSet/%s but is not headless", s.Metadata.Name, w.Metadata.Name)
						}
					}
				}
				if !found {
					t.Errorf("StatefulSet/%s serviceName %q names no Service", w.Metadata.Name, w.Spec.ServiceName)
				}
			}
		}},
		{"HPA scales an existing workload on CPU within node-id range", func(t *testing.T) {
			if len(m.hpas) == 0 {
				t.Fatal("no HorizontalPodAutoscaler")
			}
			for _, h := range m.hpas {
				ref := h.Spec.ScaleTargetRef
				w, ok := m.workload(ref.Kind, ref.Name)
				if !ok || ref.APIVersion != "apps/v1" {
					t.Errorf("HPA/%s targets %s %s/%s, which does not exist", h.Metadata.Name, ref.APIVersion, ref.Kind, ref.Name)
					continue
				}
				cpu := false
				for _, mt := range h.Spec.Metrics {
					if mt.Type == "Resource" && mt.Resource != nil && mt.Resource.Name == "cpu" {
						cpu = true
					}
				}
				if !cpu {
					t.Errorf("HPA/%s has no CPU metric", h.Metadata.Name)
				}
				if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
					t.Errorf("HPA/%s minReplicas %v, want >= 2", h.Metadata.Name, h.Spec.MinReplicas)
				}
				// Ordinals run 0..maxReplicas-1 and are the node ids.
				if h.Spec.MaxReplicas-1 > maxNodeID || h.Spec.MaxReplicas < 2 {
					t.Errorf("HPA/%s maxReplicas %d outside 2..%d", h.Metadata.Name, h.Spec.MaxReplicas, maxNodeID+1)
				}
				if w.Spec.Replicas == nil || *w.Spec.Replicas != 2 {
					t.Errorf("%s/%s replicas %v, want 2", w.Kind, w.Metadata.Name, w.Spec.Replicas)
				}
				if w.Spec.Template.Spec.Containers[0].Resources.Requests["cpu"] == "" {
					t.Errorf("HPA/%s: %s/%s has no CPU request to compute utilization from", h.Metadata.Name, w.Kind, w.Metadata.Name)
				}
			}
		}},
		{"PDB keeps one node and still lets a drain evict one", func(t *testing.T) {
			if len(m.pdbs) == 0 {
				t.Fatal("no PodDisruptionBudget")
			}
			for _, p := range m.pdbs {
				if p.Spec.MinAvailable != "1" {
					t.Errorf("PDB/%s minAvailable %q, want 1", p.Metadata.Name, p.Spec.MinAvailable)
				}
				matched := 0
				for _, w := range m.workloads {
					if p.Spec.Selector.matches(w.Spec.Template.Metadata.Labels) {
						matched++
						if w.Spec.Replicas == nil || *w.Spec.Replicas <= 1 {
							t.Errorf("PDB/%s with minAvailable 1 over %v replicas blocks every drain", p.Metadata.Name, w.Spec.Replicas)
						}
					}
				}
				if matched != 1 {
					t.Errorf("PDB/%s selects %d workloads' pods, want 1", p.Metadata.Name, matched)
				}
				for _, j := range m.jobs {
					if p.Spec.Selector.matches(j.Spec.Template.Metadata.Labels) {
						t.Errorf("PDB/%s also selects Job/%s pods", p.Metadata.Name, j.Metadata.Name)
					}
				}
			}
		}},
		{"referenced Secret exists with the keys the binary reads", func(t *testing.T) {
			secrets := map[string]secretObject{}
			for _, s := range m.secrets {
				secrets[s.Metadata.Name] = s
			}
			for owner, tpl := range m.podTemplates() {
				for _, c := range tpl.Spec.Containers {
					var refs []string
					for _, ef := range c.EnvFrom {
						if ef.SecretRef != nil {
							refs = append(refs, ef.SecretRef.Name)
						}
					}
					if len(refs) == 0 {
						t.Errorf("%s/%s takes no Secret: it would start without a master key or database", owner, c.Name)
					}
					for _, r := range refs {
						s, ok := secrets[r]
						if !ok {
							t.Errorf("%s/%s: Secret %q is not in k8s/", owner, c.Name, r)
							continue
						}
						for _, k := range []string{secret.EnvVar, "SWITCHBOARD_POSTGRES", "SWITCHBOARD_REDIS", "SWITCHBOARD_NATS"} {
							if _, ok := s.StringData[k]; !ok {
								t.Errorf("Secret/%s has no %s", r, k)
							}
						}
					}
				}
			}
		}},
		{"Secret template holds only placeholders", func(t *testing.T) {
			if len(m.secrets) == 0 {
				t.Fatal("no Secret template")
			}
			for _, s := range m.secrets {
				if len(s.Data) > 0 {
					t.Errorf("Secret/%s has base64 data: templates use stringData placeholders", s.Metadata.Name)
				}
				for k, v := range s.StringData {
					if !strings.Contains(v, "REPLACE-ME") {
						t.Errorf("Secret/%s %s=%q is not a REPLACE-ME placeholder", s.Metadata.Name, k, v)
					}
				}
				if key, ok := s.StringData[secret.EnvVar]; ok && keyAccepted(key) {
					t.Errorf("Secret/%s: the placeholder master key is usable", s.Metadata.Name)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.check)
	}
}
