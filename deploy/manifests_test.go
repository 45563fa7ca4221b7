// Package deploy holds the deployment files: the container image
// (Dockerfile), docker-compose.yml at the repository root, the systemd unit
// and the Kubernetes manifests. Its tests check them offline: every
// Kubernetes document decodes strictly into the API types, and the
// invariants that keep a three-node cluster working hold everywhere.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

const (
	k8sDir        = "kubernetes"
	headless      = "clustermail-peers"
	replicas      = 3
	readyPath     = "/v1/health/ready"
	livePath      = "/v1/health/live"
	composeFile   = "../docker-compose.yml"
	serverFlagsGo = "../cmd/clustermail/server.go"
)

// serverFlags returns the flag names of `clustermail server`, read from the
// source (fs.XxxVar(&c.Field, "name", ...) and fs.Var(value, "name", ...)),
// so that every deployment file is checked against the real flags.
func serverFlags(t *testing.T) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), serverFlagsGo, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]bool{"config": true}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) < 2 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !strings.HasSuffix(sel.Sel.Name, "Var") {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "fs" {
			return true
		}
		if lit, ok := call.Args[1].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			name, _ := strconv.Unquote(lit.Value)
			flags[name] = true
		}
		return true
	})
	for _, want := range []string{"name", "data-dir", "gossip-addr", "raft-addr", "api-addr", "smtp-addr", "join", "bootstrap-expect"} {
		if !flags[want] {
			t.Fatalf("found no --%s in %s: has the flag parsing there changed? found %v", want, serverFlagsGo, flags)
		}
	}
	return flags
}

// parseArgs turns "server --a=b --c d" into {a: b, c: d}. Every value
// must be a known server flag.
func parseArgs(t *testing.T, where string, args []string, known map[string]bool) map[string]string {
	t.Helper()
	if len(args) == 0 || args[0] != "server" {
		t.Errorf("%s: the arguments must start with the subcommand \"server\", got %q", where, args)
		return nil
	}
	out := map[string]string{}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			t.Errorf("%s: unexpected argument %q", where, a)
			continue
		}
		name, val, ok := strings.Cut(a[2:], "=")
		if !ok {
			if i+1 >= len(args) {
				t.Errorf("%s: --%s has no value", where, name)
				continue
			}
			i++
			val = args[i]
		}
		if !known[name] {
			t.Errorf("%s: --%s is not a flag of clustermail server", where, name)
		}
		if _, dup := out[name]; dup {
			t.Errorf("%s: --%s given twice", where, name)
		}
		out[name] = val
	}
	return out
}

func port(t *testing.T, where, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%s: %q: %v", where, addr, err)
		return 0
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Errorf("%s: %q: bad port", where, addr)
	}
	return n
}

func host(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// listenFlags maps each address flag to the name of the container port that
// must serve it (the Kubernetes port names; compose checks the numbers).
var listenFlags = map[string]string{
	"smtp-addr":        "smtp",
	"submission-addr":  "submission",
	"submissions-addr": "submissions",
	"imap-addr":        "imap",
	"imaps-addr":       "imaps",
	"pop3-addr":        "pop3",
	"pop3s-addr":       "pop3s",
	"api-addr":         "api",
	"raft-addr":        "cluster",
	"gossip-addr":      "gossip",
}

// mailFlags are the client-facing listeners every deployment enables.
var mailFlags = []string{"smtp-addr", "submission-addr", "submissions-addr", "imap-addr", "imaps-addr", "pop3-addr", "pop3s-addr"}

type manifests struct {
	statefulSets []appsv1.StatefulSet
	services     []corev1.Service
	pdbs         []policyv1.PodDisruptionBudget
	secrets      []corev1.Secret
	policies     []networkingv1.NetworkPolicy
	namespaces   []corev1.Namespace
	files        []string // the YAML files other than kustomization.yaml
}

// decodeStrict decodes doc into the typed object for its apiVersion and
// kind, refusing unknown and duplicate fields.
func (m *manifests) decodeStrict(doc []byte) error {
	var tm metav1.TypeMeta
	if err := sigsyaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	var err error
	switch gvk := tm.APIVersion + " " + tm.Kind; gvk {
	case "apps/v1 StatefulSet":
		var o appsv1.StatefulSet
		err = sigsyaml.UnmarshalStrict(doc, &o)
		m.statefulSets = append(m.statefulSets, o)
	case "v1 Service":
		var o corev1.Service
		err = sigsyaml.UnmarshalStrict(doc, &o)
		m.services = append(m.services, o)
	case "policy/v1 PodDisruptionBudget":
		var o policyv1.PodDisruptionBudget
		err = sigsyaml.UnmarshalStrict(doc, &o)
		m.pdbs = append(m.pdbs, o)
	case "v1 Secret":
		var o corev1.Secret
		err = sigsyaml.UnmarshalStrict(doc, &o)
		m.secrets = append(m.secrets, o)
	case "networking.k8s.io/v1 NetworkPolicy":
		var o networkingv1.NetworkPolicy
		err = sigsyaml.UnmarshalStrict(doc, &o)
		m.policies = append(m.policies, o)
	case "v1 Namespace":
		var o corev1.Namespace
		err = sigsyaml.UnmarshalStrict(doc, &o)
		m.namespaces = append(m.namespaces, o)
	default:
		return fmt.Errorf("unexpected object %q: add its type to this test", gvk)
	}
	return err
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no YAML files in %s: %v", k8sDir, err)
	}
	m := &manifests{}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		m.files = append(m.files, filepath.Base(f))
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for i := 0; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			var probe map[string]any
			if err := sigsyaml.Unmarshal(doc, &probe); err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if len(probe) == 0 { // only comments
				continue
			}
			if err := m.decodeStrict(doc); err != nil {
				t.Errorf("%s: document %d: %v", f, i, err)
			}
		}
	}
	return m
}

func TestKubernetesManifests(t *testing.T) {
	known := serverFlags(t)
	m := loadManifests(t)
	if len(m.statefulSets) != 1 {
		t.Fatalf("want one StatefulSet, found %d", len(m.statefulSets))
	}
	sts := m.statefulSets[0]
	pod := sts.Spec.Template
	labels := pod.Labels

	t.Run("statefulset", func(t *testing.T) {
		if sts.Spec.Replicas == nil || *sts.Spec.Replicas != replicas {
			got := "unset"
			if sts.Spec.Replicas != nil {
				got = strconv.Itoa(int(*sts.Spec.Replicas))
			}
			t.Errorf("replicas = %s, want %d", got, replicas)
		}
		if sts.Spec.ServiceName != headless {
			t.Errorf("serviceName = %q, want the headless service %q", sts.Spec.ServiceName, headless)
		}
		if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
			t.Errorf("podManagementPolicy = %q, want Parallel (--bootstrap-expect waits for all pods)", sts.Spec.PodManagementPolicy)
		}
		if sts.Spec.Selector == nil || !subset(sts.Spec.Selector.MatchLabels, labels) || len(sts.Spec.Selector.MatchLabels) == 0 {
			t.Errorf("selector %v does not select the pod template's labels %v", sts.Spec.Selector, labels)
		}
		if len(sts.Spec.VolumeClaimTemplates) != 1 {
			t.Errorf("want one volumeClaimTemplate, found %d", len(sts.Spec.VolumeClaimTemplates))
		}
		sc := pod.Spec.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
			t.Errorf("pod securityContext must set runAsNonRoot and a non-zero runAsUser: %+v", sc)
		}
		if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
			t.Error("the pods need no Kubernetes API token: set automountServiceAccountToken: false")
		}
	})

	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one container, found %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	args := parseArgs(t, "container args", c.Args, known)
	ports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		if _, dup := ports[p.Name]; dup || p.Name == "" {
			t.Errorf("container port %d: name %q missing or used twice", p.ContainerPort, p.Name)
		}
		ports[p.Name] = p
	}
	protocol := func(p corev1.Protocol) corev1.Protocol {
		if p == "" {
			return corev1.ProtocolTCP
		}
		return p
	}

	t.Run("container", func(t *testing.T) {
		env := map[string]string{}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
				env[e.Name] = e.ValueFrom.FieldRef.FieldPath
			}
		}
		if env["POD_NAME"] != "metadata.name" || env["NAMESPACE"] != "metadata.namespace" {
			t.Errorf("POD_NAME and NAMESPACE must come from the downward API, got %v", env)
		}
		if args["name"] != "$(POD_NAME)" {
			t.Errorf("--name = %q, want $(POD_NAME)", args["name"])
		}
		stable := "$(POD_NAME)." + headless + ".$(NAMESPACE).svc.cluster.local"
		for flag, p := range map[string]int{"gossip-addr": 7946, "raft-addr": 8300} {
			if want := stable + ":" + strconv.Itoa(p); args[flag] != want {
				t.Errorf("--%s = %q, want %q (the pod's stable name under the headless service)", flag, args[flag], want)
			}
		}
		var join []string
		for i := 0; i < replicas; i++ {
			join = append(join, fmt.Sprintf("%s-%d.%s.$(NAMESPACE).svc.cluster.local:7946", sts.Name, i, headless))
		}
		if got := strings.Split(args["join"], ","); !slices.Equal(got, join) {
			t.Errorf("--join = %q, want every pod's gossip address %q", got, join)
		}
		if args["bootstrap-expect"] != strconv.Itoa(replicas) {
			t.Errorf("--bootstrap-expect = %q, want %d (the replicas)", args["bootstrap-expect"], replicas)
		}
		for _, f := range mailFlags {
			if args[f] == "" {
				t.Errorf("--%s is not set", f)
			}
		}
		for flag, name := range listenFlags {
			if args[flag] == "" {
				continue
			}
			p, ok := ports[name]
			if !ok {
				t.Errorf("--%s %s: no container port named %q", flag, args[flag], name)
				continue
			}
			if want := port(t, flag, args[flag]); int(p.ContainerPort) != want {
				t.Errorf("container port %q is %d, but --%s listens on %d", name, p.ContainerPort, flag, want)
			}
		}
		if g, ok := ports["gossip-udp"]; !ok || g.Protocol != corev1.ProtocolUDP || g.ContainerPort != ports["gossip"].ContainerPort {
			t.Errorf("gossip needs UDP as well as TCP on the same port: %+v", g)
		}
		if h := host(args["api-addr"]); h == "127.0.0.1" || h == "localhost" {
			t.Errorf("--api-addr %q: the kubelet's probes cannot reach loopback", args["api-addr"])
		}

		for name, pr := range map[string]struct {
			p    *corev1.Probe
			path string
		}{"readinessProbe": {c.ReadinessProbe, readyPath}, "livenessProbe": {c.LivenessProbe, livePath}} {
			if pr.p == nil || pr.p.HTTPGet == nil {
				t.Errorf("%s: want an httpGet probe on %s", name, pr.path)
				continue
			}
			if pr.p.HTTPGet.Path != pr.path {
				t.Errorf("%s path = %q, want %q", name, pr.p.HTTPGet.Path, pr.path)
			}
			if pr.p.HTTPGet.Port.String() != "api" && pr.p.HTTPGet.Port.IntValue() != int(ports["api"].ContainerPort) {
				t.Errorf("%s port = %s, want the api port", name, pr.p.HTTPGet.Port.String())
			}
		}
		if c.StartupProbe != nil && c.StartupProbe.HTTPGet != nil && c.StartupProbe.HTTPGet.Path == readyPath {
			t.Error("startupProbe must not wait for readiness: a node alone in a broken cluster would be killed")
		}

		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("container securityContext: want readOnlyRootFilesystem: true")
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("container securityContext: want allowPrivilegeEscalation: false")
		}
		if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Error("container securityContext: want capabilities drop [ALL]")
		}

		mounts := map[string]string{}
		for _, vm := range c.VolumeMounts {
			mounts[vm.MountPath] = vm.Name
			if vm.SubPath != "" {
				t.Errorf("volume %s mounted with subPath: it would not see Secret updates", vm.Name)
			}
		}
		if name := mounts[args["data-dir"]]; name == "" || name != sts.Spec.VolumeClaimTemplates[0].Name {
			t.Errorf("--data-dir %q must be the volumeClaimTemplate's mount, mounts are %v", args["data-dir"], mounts)
		}
		tlsVol := mounts[filepath.Dir(args["tls-cert"])]
		if tlsVol == "" || mounts[filepath.Dir(args["tls-key"])] != tlsVol {
			t.Errorf("--tls-cert %q and --tls-key %q must be in a mounted volume", args["tls-cert"], args["tls-key"])
		}
		var secretName string
		for _, v := range pod.Spec.Volumes {
			if v.Name == tlsVol && v.Secret != nil {
				secretName = v.Secret.SecretName
			}
		}
		var found bool
		for _, s := range m.secrets {
			if s.Name != secretName {
				continue
			}
			found = true
			for _, f := range []string{args["tls-cert"], args["tls-key"]} {
				k := filepath.Base(f)
				if _, ok := s.StringData[k]; !ok {
					if _, ok := s.Data[k]; !ok {
						t.Errorf("Secret %s has no key %q for %s", s.Name, k, f)
					}
				}
			}
		}
		if !found {
			t.Errorf("the TLS volume %q must come from a Secret in the manifests (found secret %q)", tlsVol, secretName)
		}
	})

	t.Run("services", func(t *testing.T) {
		byName := map[string]corev1.Service{}
		for _, s := range m.services {
			byName[s.Name] = s
			if len(s.Spec.Selector) == 0 || !subset(s.Spec.Selector, labels) {
				t.Errorf("service %s: selector %v does not select the pods (%v)", s.Name, s.Spec.Selector, labels)
			}
			for _, sp := range s.Spec.Ports {
				tp := sp.TargetPort
				if tp.Type == intstr.String {
					cp, ok := ports[tp.StrVal]
					if !ok {
						t.Errorf("service %s port %s: no container port named %q", s.Name, sp.Name, tp.StrVal)
					} else if protocol(cp.Protocol) != protocol(sp.Protocol) {
						t.Errorf("service %s port %s: protocol %s, container port %s", s.Name, sp.Name, protocol(sp.Protocol), protocol(cp.Protocol))
					}
					continue
				}
				want := sp.Port
				if tp.IntVal != 0 {
					want = tp.IntVal
				}
				if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
					return cp.ContainerPort == want && protocol(cp.Protocol) == protocol(sp.Protocol)
				}) {
					t.Errorf("service %s port %s: target %d is no container port", s.Name, sp.Name, want)
				}
			}
		}
		h, ok := byName[headless]
		if !ok {
			t.Fatalf("no headless service %q", headless)
		}
		if h.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("%s: clusterIP = %q, want None", headless, h.Spec.ClusterIP)
		}
		if !h.Spec.PublishNotReadyAddresses {
			t.Errorf("%s: want publishNotReadyAddresses: true (peers must find a pod before it is ready)", headless)
		}
		for _, want := range []struct {
			port int32
			p    corev1.Protocol
		}{{7946, corev1.ProtocolTCP}, {7946, corev1.ProtocolUDP}, {8300, corev1.ProtocolTCP}} {
			if !slices.ContainsFunc(h.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Port == want.port && protocol(sp.Protocol) == want.p }) {
				t.Errorf("%s: no %s port %d", headless, want.p, want.port)
			}
		}
		mail, ok := byName["clustermail"]
		if !ok {
			t.Fatal("no service \"clustermail\" for the mail ports")
		}
		std := map[string]int32{"smtp": 25, "submission": 587, "submissions": 465, "imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}
		for name, p := range std {
			if !slices.ContainsFunc(mail.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Port == p && sp.TargetPort.StrVal == name }) {
				t.Errorf("service clustermail: want port %d → container port %q", p, name)
			}
		}
		for _, sp := range mail.Spec.Ports {
			if sp.TargetPort.StrVal == "api" || sp.TargetPort.StrVal == "cluster" || strings.HasPrefix(sp.TargetPort.StrVal, "gossip") {
				t.Errorf("service clustermail exposes the internal port %q", sp.TargetPort.StrVal)
			}
		}
	})

	t.Run("pdb", func(t *testing.T) {
		if len(m.pdbs) != 1 {
			t.Fatalf("want one PodDisruptionBudget, found %d", len(m.pdbs))
		}
		p := m.pdbs[0]
		if p.Spec.MaxUnavailable == nil || *p.Spec.MaxUnavailable != intstr.FromInt32(1) {
			t.Errorf("maxUnavailable = %v, want 1 (keeps a Raft majority of %d)", p.Spec.MaxUnavailable, replicas)
		}
		if p.Spec.MinAvailable != nil {
			t.Error("set maxUnavailable only")
		}
		if p.Spec.Selector == nil || len(p.Spec.Selector.MatchLabels) == 0 || !subset(p.Spec.Selector.MatchLabels, labels) {
			t.Errorf("selector %v does not select the pods", p.Spec.Selector)
		}
	})

	t.Run("networkpolicy", func(t *testing.T) {
		for _, np := range m.policies {
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					if p.Port != nil && p.Port.Type == intstr.String {
						if _, ok := ports[p.Port.StrVal]; !ok {
							t.Errorf("networkpolicy %s: no container port named %q", np.Name, p.Port.StrVal)
						}
					}
				}
			}
		}
	})

	t.Run("kustomization", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var k struct {
			APIVersion string   `json:"apiVersion"`
			Kind       string   `json:"kind"`
			Namespace  string   `json:"namespace"`
			Resources  []string `json:"resources"`
			Images     []struct {
				Name    string `json:"name"`
				NewName string `json:"newName"`
				NewTag  string `json:"newTag"`
			} `json:"images"`
		}
		if err := sigsyaml.UnmarshalStrict(b, &k); err != nil {
			t.Fatal(err)
		}
		if k.Kind != "Kustomization" {
			t.Errorf("kind = %q", k.Kind)
		}
		res := slices.Clone(k.Resources)
		sort.Strings(res)
		files := slices.Clone(m.files)
		sort.Strings(files)
		if !slices.Equal(res, files) {
			t.Errorf("kustomization resources %v, files in %s %v", res, k8sDir, files)
		}
		for _, ns := range m.namespaces {
			if k.Namespace != "" && ns.Name != k.Namespace {
				t.Errorf("namespace %q, kustomization sets %q", ns.Name, k.Namespace)
			}
		}
		image, _, _ := strings.Cut(c.Image, ":")
		if len(k.Images) > 0 && k.Images[0].Name != image {
			t.Errorf("kustomization images[0].name %q does not match the container image %q", k.Images[0].Name, c.Image)
		}
	})
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// composeService is the part of a docker-compose service the test reads.
type composeService struct {
	Image       string            `yaml:"image"`
	Hostname    string            `yaml:"hostname"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	StopSignal  string            `yaml:"stop_signal"`
	ReadOnly    bool              `yaml:"read_only"`
	CapDrop     []string          `yaml:"cap_drop"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

func TestComposeFile(t *testing.T) {
	known := serverFlags(t)
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var cf struct {
		Services map[string]composeService `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
		Networks map[string]any            `yaml:"networks"`
	}
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range cf.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	if want := []string{"n1", "n2", "n3"}; !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}
	published := map[string]string{} // host ip:port → service
	dataVolumes := map[string]string{}
	for _, name := range names {
		s := cf.Services[name]
		// The node's settings: CLUSTERMAIL_<FLAG> first, the command's flags win.
		settings := map[string]string{}
		for k, v := range s.Environment {
			flag, ok := strings.CutPrefix(k, "CLUSTERMAIL_")
			if !ok {
				continue
			}
			flag = strings.ReplaceAll(strings.ToLower(flag), "_", "-")
			if !known[flag] {
				t.Errorf("%s: %s is not a flag of clustermail server", name, k)
			}
			settings[flag] = v
		}
		for k, v := range parseArgs(t, name+" command", s.Command, known) {
			settings[k] = v
		}
		if s.Image != "clustermail:dev" {
			t.Errorf("%s: image %q, want clustermail:dev (what make image builds)", name, s.Image)
		}
		if settings["name"] != name {
			t.Errorf("%s: --name %q", name, settings["name"])
		}
		for _, f := range []string{"gossip-addr", "raft-addr"} {
			if host(settings[f]) != name {
				t.Errorf("%s: --%s %q must name the service, which the other nodes resolve", name, f, settings[f])
			}
		}
		if got, want := settings["join"], "n1:7946,n2:7946,n3:7946"; got != want {
			t.Errorf("%s: --join %q, want %q", name, got, want)
		}
		if settings["bootstrap-expect"] != "3" {
			t.Errorf("%s: --bootstrap-expect %q, want 3", name, settings["bootstrap-expect"])
		}
		if s.StopSignal != "SIGINT" {
			t.Errorf("%s: stop_signal %q, want SIGINT (stop without leaving the cluster)", name, s.StopSignal)
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
			t.Errorf("%s: want read_only: true and cap_drop: [ALL]", name)
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[0] != "CMD" {
			t.Errorf("%s: want a healthcheck in exec form [\"CMD\", ...] (the image has no shell)", name)
		} else if !strings.Contains(strings.Join(s.Healthcheck.Test, " "), readyPath) {
			t.Errorf("%s: the healthcheck should probe %s: %q", name, readyPath, s.Healthcheck.Test)
		}

		// Every mail listener and the API are published, on distinct host ports.
		containerPorts := map[int]bool{}
		for _, p := range s.Ports {
			parts := strings.Split(strings.TrimSuffix(p, "/tcp"), ":")
			if len(parts) != 3 {
				t.Errorf("%s: port %q: want HOSTIP:HOSTPORT:CONTAINERPORT", name, p)
				continue
			}
			if parts[0] != "127.0.0.1" {
				t.Errorf("%s: port %q: publish on 127.0.0.1 only (the admin API is for operators)", name, p)
			}
			key := parts[0] + ":" + parts[1]
			if other, dup := published[key]; dup {
				t.Errorf("%s: host port %s is also published by %s", name, key, other)
			}
			published[key] = name
			cp, _ := strconv.Atoi(parts[2])
			containerPorts[cp] = true
		}
		for _, f := range append(slices.Clone(mailFlags), "api-addr") {
			a := settings[f]
			if a == "" {
				t.Errorf("%s: --%s is not set", name, f)
				continue
			}
			if p := port(t, name+" --"+f, a); !containerPorts[p] {
				t.Errorf("%s: --%s %s is not published", name, f, a)
			} else if p < 1024 {
				t.Errorf("%s: --%s %s: the container runs unprivileged, use a port above 1023", name, f, a)
			}
		}
		if h := host(settings["api-addr"]); h == "127.0.0.1" || h == "localhost" {
			t.Errorf("%s: --api-addr %q is unreachable through the published port", name, settings["api-addr"])
		}

		var dataVol string
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == settings["data-dir"] {
				dataVol = parts[0]
			}
			if len(parts) >= 2 && parts[1] == filepath.Dir(settings["tls-cert"]) && (len(parts) < 3 || parts[2] != "ro") {
				t.Errorf("%s: mount the TLS directory read-only: %q", name, v)
			}
		}
		if _, ok := cf.Volumes[dataVol]; !ok || dataVol == "" {
			t.Errorf("%s: --data-dir %q must be a named volume declared under volumes:", name, settings["data-dir"])
		}
		if other, dup := dataVolumes[dataVol]; dup {
			t.Errorf("%s: volume %q is also used by %s", name, dataVol, other)
		}
		dataVolumes[dataVol] = name
	}
}

func TestSystemdFiles(t *testing.T) {
	known := serverFlags(t)
	b, err := os.ReadFile("systemd/clustermail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	for k := range cfg {
		if !known[k] || k == "config" {
			t.Errorf("clustermail.yaml: %q is not a flag of clustermail server", k)
		}
	}
	if h := host(fmt.Sprint(cfg["raft-addr"])); h == "" || h == "0.0.0.0" {
		t.Errorf("clustermail.yaml: raft-addr %v must name the host", cfg["raft-addr"])
	}

	unit, err := os.ReadFile("systemd/clustermail.service")
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	for _, line := range strings.Split(string(unit), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("clustermail.service: %q", line)
			continue
		}
		settings[k] = append(settings[k], v)
	}
	want := map[string]string{
		"KillSignal":            "SIGINT",
		"ExecReload":            "/bin/kill -HUP $MAINPID",
		"StateDirectory":        "clustermail",
		"ProtectSystem":         "strict",
		"ProtectHome":           "yes",
		"PrivateTmp":            "yes",
		"NoNewPrivileges":       "yes",
		"AmbientCapabilities":   "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
		"Restart":               "on-failure",
		"SystemCallFilter":      "@system-service",
	}
	for k, v := range want {
		if !slices.Contains(settings[k], v) {
			t.Errorf("clustermail.service: want %s=%s, have %q", k, v, settings[k])
		}
	}
	for _, k := range []string{"RestrictAddressFamilies", "LimitNOFILE", "ExecStart"} {
		if len(settings[k]) == 0 {
			t.Errorf("clustermail.service: %s is missing", k)
		}
	}
	if exec := strings.Join(settings["ExecStart"], " "); !strings.Contains(exec, "--config /etc/clustermail/clustermail.yaml") {
		t.Errorf("clustermail.service: ExecStart %q should read /etc/clustermail/clustermail.yaml", exec)
	}
	if dd := fmt.Sprint(cfg["data-dir"]); dd != "/var/lib/"+settings["StateDirectory"][0] {
		t.Errorf("clustermail.yaml data-dir %q is not the unit's StateDirectory", dd)
	}
}

func TestDockerfiles(t *testing.T) {
	for _, f := range []string{"Dockerfile", "Dockerfile.multistage"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The final stage: from the last FROM on.
		text := string(b)
		final := text[strings.LastIndex(text, "\nFROM "):]
		for _, re := range []string{
			`(?m)^FROM scratch$`,
			`(?m)^USER [1-9][0-9]*:[1-9][0-9]*$`,
			`(?m)^VOLUME \["/data"\]$`,
			`(?m)^STOPSIGNAL SIGINT$`,
			`(?m)^ENTRYPOINT \["/clustermail"\]$`,
			`(?m)^CMD \["server"\]$`,
			`(?m)^COPY .*--chown=[1-9][0-9]*:[1-9][0-9]* .*/data$`,
			`(?m)^\s*CMD \["/healthcheck", "http://127\.0\.0\.1:8080/v1/health/ready"\]$`,
		} {
			if !regexp.MustCompile(re).MatchString(final) {
				t.Errorf("%s: the final stage does not match %s", f, re)
			}
		}
	}
}
