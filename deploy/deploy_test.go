// Package deploy_test checks the deployment files against the service they deploy: the
// Kubernetes manifests against its configuration and the assets it provisions, the Grafana
// dashboard and the Prometheus rules against the metrics it registers, and the image
// definitions against each other.
package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/paystatus/orderstatus/internal/callbacks"
	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/providers/registry"
)

// manifest is one YAML document of deploy/kubernetes, its spec kept raw until its kind is
// known, and the whole document kept for a strict decode into its type (strictDecode).
type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec yaml.Node         `yaml:"spec"`
	file string
	raw  []byte
}

// docs splits YAML into its documents; every one must name its apiVersion and kind.
func docs(t *testing.T, name string, data []byte) []manifest {
	t.Helper()
	var out []manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var m manifest
		if err := n.Decode(&m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.Kind == "" || m.APIVersion == "" {
			t.Fatalf("%s: a document without kind or apiVersion", name)
		}
		if m.raw, err = yaml.Marshal(&n); err != nil {
			t.Fatal(err)
		}
		m.file = name
		out = append(out, m)
	}
	return out
}

func readDocs(t *testing.T, path string) []manifest {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel("kubernetes", path)
	return docs(t, rel, data)
}

// kustomization reads dir's kustomization.yaml strictly, as kustomize's own type.
func kustomization(t *testing.T, dir string) *kusttypes.Kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kusttypes.Kustomization
	if err := unmarshalStrict(data, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	return &k
}

// components are the optional kustomize components under deploy/kubernetes/components.
func components(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("kubernetes", "components", "*", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		out = append(out, filepath.Dir(d))
	}
	slices.Sort(out)
	want := []string{
		filepath.Join("kubernetes", "components", "callbacks"),
		filepath.Join("kubernetes", "components", "monitoring"),
		filepath.Join("kubernetes", "components", "nack"),
	}
	if !slices.Equal(out, want) {
		t.Fatalf("components %v, want callbacks, monitoring and nack", out)
	}
	return out
}

// manifests reads the resources deploy/kubernetes deploys: the base kustomization's and every
// component's (their patches are not resources of their own).
func manifests(t *testing.T) []manifest {
	t.Helper()
	var out []manifest
	for _, dir := range append([]string{"kubernetes"}, components(t)...) {
		k := kustomization(t, dir)
		if len(k.Resources) == 0 {
			t.Fatalf("%s: no resources", dir)
		}
		for _, r := range k.Resources {
			out = append(out, readDocs(t, filepath.Join(dir, r))...)
		}
	}
	return out
}

func find(t *testing.T, ms []manifest, kind string) []manifest {
	t.Helper()
	var out []manifest
	for _, m := range ms {
		if m.Kind == kind {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s in deploy/kubernetes", kind)
	}
	return out
}

// named is the one resource of kind and name in ms.
func named(t *testing.T, ms []manifest, kind, name string) manifest {
	t.Helper()
	var out []manifest
	for _, m := range find(t, ms, kind) {
		if m.Metadata.Name == name {
			out = append(out, m)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d %s named %s, want 1", len(out), kind, name)
	}
	return out[0]
}

// decodeSpec decodes a spec into v. A strict decode refuses keys v does not declare: a field
// added to a NACK resource is one this test must learn to compare.
func decodeSpec(t *testing.T, m manifest, v any, strict bool) {
	t.Helper()
	raw, err := yaml.Marshal(&m.Spec)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(strict)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s %s %s: %v", m.file, m.Kind, m.Metadata.Name, err)
	}
}

// The Prometheus Operator's resources, as far as deploy/kubernetes uses them (its Go types are
// not a dependency): a field they do not declare fails the strict decode.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// ruleGroups is a Prometheus rule file, and a PrometheusRule's spec.
type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name" yaml:"name"`
		Rules []struct {
			Alert       string            `json:"alert" yaml:"alert"`
			Expr        string            `json:"expr" yaml:"expr"`
			For         string            `json:"for" yaml:"for"`
			Labels      map[string]string `json:"labels" yaml:"labels"`
			Annotations map[string]string `json:"annotations" yaml:"annotations"`
		} `json:"rules" yaml:"rules"`
	} `json:"groups" yaml:"groups"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ruleGroups `json:"spec"`
}

// nackResource is a NACK resource; its spec is decoded strictly into nackStream, nackKeyValue
// or nackConsumer.
type nackResource struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              json.RawMessage `json:"spec"`
}

// kinds are the resources deploy/kubernetes may hold: their apiVersion, and the type a strict
// decode checks them against.
var kinds = map[string]struct {
	apiVersion string
	new        func() any
}{
	"ConfigMap":           {"v1", func() any { return &corev1.ConfigMap{} }},
	"Service":             {"v1", func() any { return &corev1.Service{} }},
	"Deployment":          {"apps/v1", func() any { return &appsv1.Deployment{} }},
	"PodDisruptionBudget": {"policy/v1", func() any { return &policyv1.PodDisruptionBudget{} }},
	"NetworkPolicy":       {"networking.k8s.io/v1", func() any { return &networkingv1.NetworkPolicy{} }},
	"Ingress":             {"networking.k8s.io/v1", func() any { return &networkingv1.Ingress{} }},
	"ServiceMonitor":      {"monitoring.coreos.com/v1", func() any { return &serviceMonitor{} }},
	"PrometheusRule":      {"monitoring.coreos.com/v1", func() any { return &prometheusRule{} }},
	"Stream":              {"jetstream.nats.io/v1beta2", func() any { return &nackResource{} }},
	"KeyValue":            {"jetstream.nats.io/v1beta2", func() any { return &nackResource{} }},
	"Consumer":            {"jetstream.nats.io/v1beta2", func() any { return &nackResource{} }},
	"Kustomization":       {"kustomize.config.k8s.io/v1beta1", func() any { return &kusttypes.Kustomization{} }},
	"Component":           {"kustomize.config.k8s.io/v1alpha1", func() any { return &kusttypes.Kustomization{} }},
}

// unmarshalStrict decodes YAML as the API server decodes a request with fieldValidation=Strict:
// field names match case-sensitively (encoding/json alone would take "newtag" for "newTag"),
// and an unknown or duplicate field is an error, at any depth.
func unmarshalStrict(data []byte, v any) error {
	js, err := sigsyaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(js, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// strictDecode decodes a whole document into its kind's type, refusing any key the type does
// not declare (unmarshalStrict).
func strictDecode(m manifest) (any, error) {
	k, ok := kinds[m.Kind]
	if !ok {
		return nil, fmt.Errorf("%s: kind %s has no type to check it against", m.file, m.Kind)
	}
	if m.APIVersion != k.apiVersion {
		return nil, fmt.Errorf("%s: %s %s has apiVersion %s, want %s", m.file, m.Kind, m.Metadata.Name, m.APIVersion, k.apiVersion)
	}
	v := k.new()
	if err := unmarshalStrict(m.raw, v); err != nil {
		return nil, fmt.Errorf("%s: %s %s: %w", m.file, m.Kind, m.Metadata.Name, err)
	}
	if r, ok := v.(*nackResource); ok {
		var spec any
		switch m.Kind {
		case "Stream":
			spec = &nackStream{}
		case "KeyValue":
			spec = &nackKeyValue{}
		case "Consumer":
			spec = &nackConsumer{}
		}
		dec := yaml.NewDecoder(bytes.NewReader(r.Spec))
		dec.KnownFields(true)
		if err := dec.Decode(spec); err != nil {
			return nil, fmt.Errorf("%s: %s %s: %w", m.file, m.Kind, m.Metadata.Name, err)
		}
	}
	return v, nil
}

func mustDecode[T any](t *testing.T, m manifest) T {
	t.Helper()
	v, err := strictDecode(m)
	if err != nil {
		t.Fatal(err)
	}
	out, ok := v.(T)
	if !ok {
		t.Fatalf("%s: %s decodes to %T", m.file, m.Kind, v)
	}
	return out
}

// yamlFiles are every YAML file under deploy/kubernetes, relative to it.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir("kubernetes", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			rel, _ := filepath.Rel("kubernetes", path)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ingressExample is the Ingress an operator copies into an overlay: components/callbacks does
// not deploy it (its host, TLS Secret and class are the operator's); TestCallbacksComponent
// builds it as an overlay's resource.
var ingressExample = filepath.Join("components", "callbacks", "ingress.example.yaml")

// Every document of every YAML file in deploy/kubernetes (resources, patches, kustomizations,
// examples) decodes strictly into its kind's type; every file is a kustomization, a resource or
// a patch one of them names, or an example a test builds, so nothing lies there unchecked.
func TestKubernetesResourcesDecodeStrictly(t *testing.T) {
	used := map[string]bool{ingressExample: true}
	for _, dir := range append([]string{"kubernetes"}, components(t)...) {
		rel, _ := filepath.Rel("kubernetes", dir)
		used[filepath.Join(rel, "kustomization.yaml")] = true
		k := kustomization(t, dir)
		for _, r := range k.Resources {
			used[filepath.Join(rel, r)] = true
		}
		for _, p := range k.Patches {
			if p.Path == "" {
				t.Errorf("%s: an inline patch; keep patches in files, so this test decodes them", dir)
			}
			used[filepath.Join(rel, p.Path)] = true
		}
	}
	for _, f := range yamlFiles(t) {
		if !used[f] {
			t.Errorf("%s: no kustomization names it", f)
		}
		for _, m := range readDocs(t, filepath.Join("kubernetes", f)) {
			if _, err := strictDecode(m); err != nil {
				t.Error(err)
			}
		}
	}
}

// A misspelled field, at the top, in a spec or deep inside one, fails the strict decode of
// TestKubernetesResourcesDecodeStrictly: each misspelling below is made in its file's text.
func TestKubernetesStrictDecodeRefusesMisspelledFields(t *testing.T) {
	for _, c := range []struct{ file, field, typo string }{
		{"deployment.yaml", "automountServiceAccountToken", "automountServiceAcountToken"},
		{"deployment.yaml", "resourceFieldRef", "resourceFieldRf"},
		{"deployment.yaml", "timeoutSeconds", "timeoutSecond"},
		{"deployment.yaml", "configMapKeyRef", "configmapKeyRef"},
		{"configmap.yaml", "data", "date"},
		{"poddisruptionbudget.yaml", "maxUnavailable", "maxUnavailible"},
		{"poddisruptionbudget.yaml", "matchLabels", "matchLabel"},
		{"networkpolicy.yaml", "namespaceSelector", "namespaceSelecter"},
		{"networkpolicy.yaml", "policyTypes", "policyType"},
		{"networkpolicy.yaml", "protocol", "protocl"},
		{"kustomization.yaml", "newTag", "newtag"},
		{filepath.Join("components", "nack", "kustomization.yaml"), "patches", "patchs"},
		{filepath.Join("components", "nack", "provision-false.yaml"), "metadata", "metdata"},
		{filepath.Join("components", "nack", "nack.yaml"), "allowMsgSchedules", "allowMsgSchedule"},
		{filepath.Join("components", "monitoring", "kustomization.yaml"), "resources", "resource"},
		{filepath.Join("components", "monitoring", "servicemonitor.yaml"), "interval", "intervall"},
		{filepath.Join("components", "monitoring", "prometheusrule.yaml"), "annotations", "anotations"},
		{filepath.Join("components", "monitoring", "prometheusrule.yaml"), "groups", "group"},
		{filepath.Join("components", "callbacks", "kustomization.yaml"), "patches", "patch"},
		{filepath.Join("components", "callbacks", "listen.yaml"), "data", "dat"},
		{filepath.Join("components", "callbacks", "container-port.yaml"), "containerPort", "containerport"},
		{filepath.Join("components", "callbacks", "service.yaml"), "appProtocol", "appProtocoll"},
		{filepath.Join("components", "callbacks", "networkpolicy.yaml"), "namespaceSelector", "namespaceSelectors"},
		{ingressExample, "pathType", "pathtype"},
		{ingressExample, "secretName", "secret"},
	} {
		data, err := os.ReadFile(filepath.Join("kubernetes", c.file))
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`(?m)^(\s*(- )?)` + regexp.QuoteMeta(c.field) + `:`)
		loc := re.FindSubmatchIndex(data)
		if loc == nil {
			t.Errorf("%s: no field %s to misspell", c.file, c.field)
			continue
		}
		bad := slices.Concat(data[:loc[3]], []byte(c.typo+":"), data[loc[1]:])
		failed := false
		for _, m := range docs(t, c.file, bad) {
			if _, err := strictDecode(m); err != nil {
				failed = true
			}
		}
		if !failed {
			t.Errorf("%s with %s misspelled as %s decodes strictly", c.file, c.field, c.typo)
		}
	}
}

// readinessWait is how long natsinfra.Ready waits for JetStream's answers.
const readinessWait = 2 * time.Second

// env resolves a container's environment the way the kubelet would, from the ConfigMap and
// the resources; Secret values are stand-ins.
func podEnv(t *testing.T, c corev1.Container, cm *corev1.ConfigMap) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch vf := e.ValueFrom; {
		case vf == nil:
			env[e.Name] = e.Value
		case vf.SecretKeyRef != nil:
			env[e.Name] = "from-secret-" + vf.SecretKeyRef.Key
		case vf.ConfigMapKeyRef != nil:
			v, ok := cm.Data[vf.ConfigMapKeyRef.Key]
			if vf.ConfigMapKeyRef.Name != cm.Name || !ok {
				t.Errorf("env %s: ConfigMap %s has no key %s", e.Name, vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key)
			}
			env[e.Name] = v
		case vf.ResourceFieldRef != nil:
			r := vf.ResourceFieldRef
			if r.ContainerName != "" && r.ContainerName != c.Name {
				t.Errorf("env %s: resourceFieldRef names container %s, not %s", e.Name, r.ContainerName, c.Name)
			}
			if r.Resource != "limits.memory" {
				t.Fatalf("env %s: resourceFieldRef %s: only limits.memory is expected", e.Name, r.Resource)
			}
			div := int64(1)
			if !r.Divisor.IsZero() {
				div = r.Divisor.Value()
			}
			env[e.Name] = strconv.FormatInt(c.Resources.Limits.Memory().Value()/div, 10)
		default:
			t.Errorf("env %s has neither a value nor a secretKeyRef, configMapKeyRef or resourceFieldRef", e.Name)
		}
	}
	return env
}

// parseConfig parses the ConfigMap's consumer.yaml with the pod's environment.
func parseConfig(t *testing.T, cm *corev1.ConfigMap, env map[string]string) *config.Config {
	t.Helper()
	file, ok := cm.Data["consumer.yaml"]
	if !ok {
		t.Fatal("ConfigMap has no consumer.yaml")
	}
	cfg, err := parseConsumerYAML(t, file, env)
	if err != nil {
		t.Fatalf("ConfigMap consumer.yaml: %v", err)
	}
	return cfg
}

// parseConsumerYAML parses a consumer.yaml as the service does (config.Parse: unknown keys and
// bad values are errors) with the pod's environment.
func parseConsumerYAML(t *testing.T, file string, env map[string]string) (*config.Config, error) {
	t.Helper()
	for _, m := range varRe.FindAllStringSubmatch(file, -1) {
		if _, ok := env[m[1]]; !ok {
			t.Errorf("consumer.yaml uses ${%s}, which the Deployment does not set", m[1])
		}
	}
	// NATS_CREDS names the mounted creds file; validation reads it, so give it a real one.
	localCreds := natstest.WriteCreds(t)
	lookup := func(k string) (string, bool) {
		v, ok := env[k]
		switch {
		case k == "NATS_CREDS" && ok:
			return localCreds, true
		case k == "KUDIAN_BASE_URL" && strings.HasPrefix(v, "from-secret-"):
			return "https://kudian.invalid", true
		}
		return v, ok
	}
	return config.Parse([]byte(file), lookup)
}

var varRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)

// The ConfigMap's consumer.yaml passes the service's own validation with the environment the
// Deployment gives it; the probes, ports, mounts, memory limit and grace period agree with that
// config.
func TestKubernetesManifestsAgreeWithConfig(t *testing.T) {
	ms := manifests(t)
	cm := mustDecode[*corev1.ConfigMap](t, find(t, ms, "ConfigMap")[0])
	dep := mustDecode[*appsv1.Deployment](t, find(t, ms, "Deployment")[0])
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	env := podEnv(t, c, cm)
	cfg := parseConfig(t, cm, env)
	credsPath := env["NATS_CREDS"]
	if credsPath == "" {
		t.Fatal("the Deployment sets no NATS_CREDS")
	}
	if !cfg.NATS.Provision {
		t.Error("the base ConfigMap has nats.provision false: without components/nack nothing makes the streams")
	}
	if cfg.Callbacks.Listen != "" {
		t.Errorf("the base ConfigMap has callbacks.listen %q: without components/callbacks no port, Service or NetworkPolicy rule reaches it", cfg.Callbacks.Listen)
	}

	// GOMEMLIMIT is the memory limit in bytes (a plain number is bytes to the Go runtime).
	limit := c.Resources.Limits.Memory()
	if limit.IsZero() {
		t.Fatal("no memory limit: GOMEMLIMIT would be the node's memory")
	}
	if got, want := env["GOMEMLIMIT"], strconv.FormatInt(limit.Value(), 10); got != want {
		t.Errorf("GOMEMLIMIT %q, want the memory limit in bytes, %s (resourceFieldRef limits.memory, divisor 1)", got, want)
	}
	if tok := pod.AutomountServiceAccountToken; tok == nil || *tok {
		t.Error("automountServiceAccountToken is not false")
	}
	if c.Image == "" || strings.ContainsAny(c.Image, ":@") {
		t.Errorf("image %q: name it bare; kustomization.yaml's images: entry pins it", c.Image)
	}

	// The creds file is where a Secret volume puts it.
	credsMounted := false
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.Secret == nil {
				continue
			}
			for _, it := range v.Secret.Items {
				if filepath.Join(vm.MountPath, it.Path) == credsPath {
					credsMounted = true
				}
			}
		}
	}
	if !credsMounted {
		t.Errorf("NATS_CREDS %s is not a file mounted from a Secret", credsPath)
	}
	// The config file is the ConfigMap's, at the path --config names.
	configMounted := false
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name && vm.SubPath == "consumer.yaml" &&
				slices.Equal(c.Args, []string{"--config", vm.MountPath}) {
				configMounted = true
			}
		}
	}
	if !configMounted {
		t.Errorf("args %v do not name the ConfigMap's consumer.yaml as mounted", c.Args)
	}

	// HTTP listens on every interface, on the port the probes and the Service use.
	host, portStr, err := net.SplitHostPort(cfg.HTTP.Listen)
	if err != nil {
		t.Fatalf("http.listen %q: %v", cfg.HTTP.Listen, err)
	}
	if host != "0.0.0.0" && host != "" {
		t.Errorf("http.listen %q: in a pod it must listen on 0.0.0.0", cfg.HTTP.Listen)
	}
	port, _ := strconv.Atoi(portStr)
	resolve := containerPort(c)
	for _, pr := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("no %s probe", pr.name)
			continue
		}
		if pr.p.HTTPGet.Path != pr.path || resolve(pr.p.HTTPGet.Port) != port {
			t.Errorf("%s probe %s on port %d, want %s on %d", pr.name, pr.p.HTTPGet.Path, resolve(pr.p.HTTPGet.Port), pr.path, port)
		}
	}
	// The readiness probe waits longer than the check waits for JetStream, so a slow answer
	// shows as "not ready" with its reason; it fails after a few checks, not on one.
	if rp := c.ReadinessProbe; rp != nil {
		if timeout := time.Duration(rp.TimeoutSeconds) * time.Second; timeout <= readinessWait {
			t.Errorf("readiness timeoutSeconds %d: not above the check's own wait of %s", rp.TimeoutSeconds, readinessWait)
		}
		if rp.PeriodSeconds < rp.TimeoutSeconds || rp.FailureThreshold < 2 {
			t.Errorf("readiness periodSeconds %d, failureThreshold %d: want a period of at least the timeout %d and 2 or more failures",
				rp.PeriodSeconds, rp.FailureThreshold, rp.TimeoutSeconds)
		}
	}

	// The pod outlives the consumer's shutdown: 2/3 of ack_wait, then a few seconds to exit.
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	if shutdown := cfg.Consumer.AckWait * 2 / 3; grace < shutdown+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %s: the consumer may take %s to stop (2/3 of consumer.ack_wait) plus its exit", grace, shutdown)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", dep.Spec.Replicas)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("resource requests %v: want cpu and memory", c.Resources.Requests)
	}
	if cfg.NATS.Replicas != 3 {
		t.Errorf("nats.replicas %d in the ConfigMap, want 3 (the NACK resources' replicas)", cfg.NATS.Replicas)
	}

	// The Service sends its http port to the container's; the ServiceMonitor scrapes /metrics there.
	svc := mustDecode[*corev1.Service](t, named(t, ms, "Service", "orderstatus"))
	if len(svc.Spec.Ports) != 1 || resolve(svc.Spec.Ports[0].TargetPort) != port {
		t.Errorf("Service ports %+v do not reach http.listen's port %d", svc.Spec.Ports, port)
	}
	sm := mustDecode[*serviceMonitor](t, find(t, ms, "ServiceMonitor")[0])
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Path != "/metrics" || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name {
		t.Errorf("ServiceMonitor endpoints %+v: want /metrics on port %s", sm.Spec.Endpoints, svc.Spec.Ports[0].Name)
	}
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, which the Service is not labelled with", k, v)
		}
	}
}

// containerPort resolves a port by number or by the container's port name.
func containerPort(c corev1.Container) func(intstr.IntOrString) int {
	return func(p intstr.IntOrString) int {
		if p.Type == intstr.Int {
			return p.IntValue()
		}
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal {
				return int(cp.ContainerPort)
			}
		}
		return 0
	}
}

// selects reports whether a label selector of matchLabels only selects pods labelled podLabels.
func selects(sel metav1.LabelSelector, podLabels map[string]string) bool {
	if len(sel.MatchLabels) == 0 || len(sel.MatchExpressions) != 0 {
		return false
	}
	for k, v := range sel.MatchLabels {
		if podLabels[k] != v {
			return false
		}
	}
	return true
}

// The PodDisruptionBudget and the NetworkPolicy cover the Deployment's pods: a drain takes one
// replica at a time; in, only the monitoring namespace reaches the metrics port; out, only
// NATS (the ConfigMap's nats.url port), the providers (443) and DNS (53, UDP and TCP).
func TestKubernetesDisruptionBudgetAndNetworkPolicy(t *testing.T) {
	ms := manifests(t)
	cm := mustDecode[*corev1.ConfigMap](t, find(t, ms, "ConfigMap")[0])
	dep := mustDecode[*appsv1.Deployment](t, find(t, ms, "Deployment")[0])
	c := dep.Spec.Template.Spec.Containers[0]
	cfg := parseConfig(t, cm, podEnv(t, c, cm))
	podLabels := dep.Spec.Template.Labels

	pdb := mustDecode[*policyv1.PodDisruptionBudget](t, find(t, ms, "PodDisruptionBudget")[0])
	if pdb.Spec.Selector == nil || !selects(*pdb.Spec.Selector, podLabels) {
		t.Errorf("PodDisruptionBudget selector %v does not select the pods %v", pdb.Spec.Selector, podLabels)
	}
	if mu := pdb.Spec.MaxUnavailable; pdb.Spec.MinAvailable != nil || mu == nil || mu.Type != intstr.Int || mu.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget minAvailable %v maxUnavailable %v: want maxUnavailable 1", pdb.Spec.MinAvailable, mu)
	}

	np := mustDecode[*networkingv1.NetworkPolicy](t, named(t, ms, "NetworkPolicy", "orderstatus"))
	if !selects(np.Spec.PodSelector, podLabels) {
		t.Errorf("NetworkPolicy podSelector %v does not select the pods %v", np.Spec.PodSelector, podLabels)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("policyTypes %v, want Ingress and Egress", np.Spec.PolicyTypes)
	}
	_, httpPort, _ := net.SplitHostPort(cfg.HTTP.Listen)
	resolve := containerPort(c)
	if len(np.Spec.Ingress) != 1 {
		t.Fatalf("%d ingress rules, want 1", len(np.Spec.Ingress))
	}
	in := np.Spec.Ingress[0]
	monitoring := metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}
	if len(in.From) != 1 || in.From[0].PodSelector != nil || in.From[0].IPBlock != nil ||
		in.From[0].NamespaceSelector == nil || !reflect.DeepEqual(*in.From[0].NamespaceSelector, monitoring) {
		t.Errorf("ingress from %+v, want only the namespace monitoring", in.From)
	}
	if len(in.Ports) != 1 || in.Ports[0].Port == nil || strconv.Itoa(resolve(*in.Ports[0].Port)) != httpPort ||
		in.Ports[0].Protocol == nil || *in.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("ingress ports %+v, want TCP to the metrics port %s only", in.Ports, httpPort)
	}

	u, err := url.Parse(strings.Split(cfg.NATS.URL, ",")[0])
	if err != nil || u.Port() == "" {
		t.Fatalf("nats.url %q: no port", cfg.NATS.URL)
	}
	var egress []string
	for _, r := range np.Spec.Egress {
		if len(r.To) != 0 {
			t.Errorf("egress rule %+v: by port only (NATS may live outside the cluster; the providers' IPs are not fixed)", r)
		}
		for _, p := range r.Ports {
			if p.Protocol == nil || p.Port == nil || p.EndPort != nil {
				t.Errorf("egress port %+v: want a protocol and one port", p)
				continue
			}
			egress = append(egress, string(*p.Protocol)+"/"+p.Port.String())
		}
	}
	slices.Sort(egress)
	if want := []string{"TCP/" + u.Port(), "TCP/443", "TCP/53", "UDP/53"}; !slices.Equal(egress, want) {
		t.Errorf("egress %v, want %v (NATS, providers, DNS)", egress, want)
	}
}

// build runs kustomize (its Go API, as `kubectl apply -k` would) on an overlay of the base and
// the given components, and returns what it renders.
func build(t *testing.T, comps ...string) []manifest {
	t.Helper()
	return buildOverlay(t, nil, comps...)
}

// buildOverlay is build with files of deploy/kubernetes copied into the overlay and listed
// under its resources, as an operator adds an example to an overlay of theirs.
func buildOverlay(t *testing.T, files []string, comps ...string) []manifest {
	t.Helper()
	dir := t.TempDir()
	rel := func(p string) string {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		r, err := filepath.Rel(dir, abs)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + rel("kubernetes") + "\n"
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join("kubernetes", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		k += "  - " + filepath.Base(f) + "\n"
	}
	if len(comps) > 0 {
		k += "components:\n"
		for _, c := range comps {
			k += "  - " + rel(filepath.Join("kubernetes", "components", c)) + "\n"
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build with components %v: %v", comps, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return docs(t, "kustomize build "+strings.Join(slices.Concat([]string{"base"}, comps, files), "+"), out)
}

// kustomize builds the base alone and with each combination of the optional components: the
// image is the pinned one, GOMEMLIMIT is set, nats.provision is false exactly when the NACK
// resources are there, callbacks.listen is on exactly with components/callbacks (checkCallbacks),
// the ServiceMonitor selects the metrics Service alone, and each component brings its resources
// and nothing else does.
func TestKustomizeBuilds(t *testing.T) {
	img := kustomization(t, "kubernetes").Images
	if len(img) != 1 || img[0].Name == "" || img[0].NewName == "" || (img[0].NewTag == "" && img[0].Digest == "") || img[0].NewTag == "latest" {
		t.Fatalf("kustomization.yaml images %+v: want one entry pinning a name and a tag or digest (not latest)", img)
	}
	wantImage := img[0].NewName + ":" + img[0].NewTag
	if img[0].Digest != "" {
		wantImage = img[0].NewName + "@" + img[0].Digest
	}
	var names []string
	for _, dir := range components(t) {
		names = append(names, filepath.Base(dir))
	}
	combos := [][]string{nil}
	for _, n := range names {
		for _, c := range combos {
			combos = append(combos, append(slices.Clone(c), n))
		}
	}
	for _, comps := range combos {
		t.Run(strings.Join(append([]string{"base"}, comps...), "+"), func(t *testing.T) {
			ms := build(t, comps...)
			nack, monitoring, cb := slices.Contains(comps, "nack"), slices.Contains(comps, "monitoring"), slices.Contains(comps, "callbacks")
			count := map[string]int{}
			for _, m := range ms {
				if _, err := strictDecode(m); err != nil {
					t.Error(err)
				}
				count[m.Kind]++
			}
			want := map[string]int{"ConfigMap": 1, "Deployment": 1, "Service": 1, "PodDisruptionBudget": 1, "NetworkPolicy": 1}
			if nack {
				want["Stream"], want["KeyValue"], want["Consumer"] = 4, 3, 3
			}
			if monitoring {
				want["ServiceMonitor"], want["PrometheusRule"] = 1, 1
			}
			if cb {
				want["Service"], want["NetworkPolicy"] = 2, 2
			}
			if !maps.Equal(count, want) {
				t.Errorf("kinds %v, want %v", count, want)
			}
			cm := mustDecode[*corev1.ConfigMap](t, find(t, ms, "ConfigMap")[0])
			dep := mustDecode[*appsv1.Deployment](t, find(t, ms, "Deployment")[0])
			c := dep.Spec.Template.Spec.Containers[0]
			if c.Image != wantImage {
				t.Errorf("image %q, want %q", c.Image, wantImage)
			}
			env := podEnv(t, c, cm)
			if _, err := strconv.ParseInt(env["GOMEMLIMIT"], 10, 64); err != nil {
				t.Errorf("GOMEMLIMIT %q: not a byte count", env["GOMEMLIMIT"])
			}
			cfg := parseConfig(t, cm, env)
			if cfg.NATS.Provision == nack {
				t.Errorf("nats.provision %v with the NACK component %v: the service and NACK would both manage the streams, or neither", cfg.NATS.Provision, nack)
			}
			checkCallbacks(t, ms, cfg, dep, cb)
			if monitoring {
				sm := mustDecode[*serviceMonitor](t, find(t, ms, "ServiceMonitor")[0])
				for _, m := range find(t, ms, "Service") {
					svc := mustDecode[*corev1.Service](t, m)
					if sel := selects(sm.Spec.Selector, svc.Labels); sel != (svc.Name == "orderstatus") {
						t.Errorf("ServiceMonitor selects Service %s: %v; want only the metrics Service orderstatus", svc.Name, sel)
					}
				}
			}
		})
	}
}

// checkCallbacks checks a build's callback endpoint. Without components/callbacks
// callbacks.listen is off and the pod has no port for it. With it, callbacks.listen is on every
// interface, on the container port callbacks; the Service orderstatus-callbacks reaches that
// port alone and no other Service reaches it; the NetworkPolicy orderstatus-callbacks lets one
// namespace in to that port alone and governs no egress; and no rule but the base's monitoring
// one reaches the metrics port.
func checkCallbacks(t *testing.T, ms []manifest, cfg *config.Config, dep *appsv1.Deployment, on bool) {
	t.Helper()
	c := dep.Spec.Template.Spec.Containers[0]
	podLabels := dep.Spec.Template.Labels
	resolve := containerPort(c)
	cbPort := resolve(intstr.FromString("callbacks"))
	if !on {
		if cfg.Callbacks.Listen != "" || cbPort != 0 {
			t.Errorf("without components/callbacks: callbacks.listen %q, container port callbacks %d; want off", cfg.Callbacks.Listen, cbPort)
		}
		return
	}
	host, portStr, err := net.SplitHostPort(cfg.Callbacks.Listen)
	if err != nil {
		t.Fatalf("with components/callbacks, callbacks.listen %q: %v", cfg.Callbacks.Listen, err)
	}
	if host != "0.0.0.0" && host != "" {
		t.Errorf("callbacks.listen %q: in a pod it must listen on 0.0.0.0", cfg.Callbacks.Listen)
	}
	if port, _ := strconv.Atoi(portStr); port == 0 || port != cbPort {
		t.Errorf("callbacks.listen %q, container port callbacks %d: want the same port", cfg.Callbacks.Listen, cbPort)
	}
	_, httpStr, _ := net.SplitHostPort(cfg.HTTP.Listen)
	httpPort, _ := strconv.Atoi(httpStr)

	for _, m := range find(t, ms, "Service") {
		svc := mustDecode[*corev1.Service](t, m)
		if !selects(metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, podLabels) {
			continue
		}
		var reached []int
		for _, p := range svc.Spec.Ports {
			reached = append(reached, resolve(p.TargetPort))
		}
		if (svc.Name == "orderstatus-callbacks") != slices.Contains(reached, cbPort) ||
			svc.Name == "orderstatus-callbacks" && !slices.Equal(reached, []int{cbPort}) {
			t.Errorf("Service %s reaches ports %v: only orderstatus-callbacks may reach the callbacks port %d, and nothing else", svc.Name, reached, cbPort)
		}
	}

	np := mustDecode[*networkingv1.NetworkPolicy](t, named(t, ms, "NetworkPolicy", "orderstatus-callbacks"))
	if !selects(np.Spec.PodSelector, podLabels) {
		t.Errorf("NetworkPolicy %s podSelector %v does not select the pods %v", np.Name, np.Spec.PodSelector, podLabels)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(np.Spec.Egress) != 0 {
		t.Errorf("NetworkPolicy %s policyTypes %v, egress %v: want Ingress alone (the base's egress rules stay the only ones)", np.Name, np.Spec.PolicyTypes, np.Spec.Egress)
	}
	if len(np.Spec.Ingress) != 1 {
		t.Fatalf("NetworkPolicy %s: %d ingress rules, want 1", np.Name, len(np.Spec.Ingress))
	}
	in := np.Spec.Ingress[0]
	if len(in.From) != 1 || in.From[0].PodSelector != nil || in.From[0].IPBlock != nil || in.From[0].NamespaceSelector == nil ||
		len(in.From[0].NamespaceSelector.MatchExpressions) != 0 || len(in.From[0].NamespaceSelector.MatchLabels) != 1 ||
		in.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "" {
		t.Errorf("NetworkPolicy %s from %+v: want one namespace, by kubernetes.io/metadata.name", np.Name, in.From)
	}
	if len(in.Ports) != 1 || in.Ports[0].Port == nil || resolve(*in.Ports[0].Port) != cbPort || in.Ports[0].EndPort != nil ||
		in.Ports[0].Protocol == nil || *in.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("NetworkPolicy %s ports %+v, want TCP to the callbacks port %d only", np.Name, in.Ports, cbPort)
	}
	for _, m := range find(t, ms, "NetworkPolicy") {
		p := mustDecode[*networkingv1.NetworkPolicy](t, m)
		for _, r := range p.Spec.Ingress {
			for _, port := range r.Ports {
				if p.Name != "orderstatus" && port.Port != nil && resolve(*port.Port) == httpPort {
					t.Errorf("NetworkPolicy %s lets %+v in to the metrics port %d", p.Name, r.From, httpPort)
				}
			}
			if len(r.Ports) == 0 {
				t.Errorf("NetworkPolicy %s: an ingress rule for every port", p.Name)
			}
		}
	}
}

// The PrometheusRule of components/monitoring holds exactly the groups of
// deploy/prometheus/orderstatus-rules.yaml (which `make rules` checks and tests with promtool),
// and every alert's runbook_url is the README's Troubleshooting entry named after it.
func TestPrometheusRuleMatchesRuleFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("prometheus", "orderstatus-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file ruleGroups
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("orderstatus-rules.yaml: %v", err)
	}
	prm := find(t, manifests(t), "PrometheusRule")
	if len(prm) != 1 {
		t.Fatalf("%d PrometheusRules, want 1", len(prm))
	}
	pr := mustDecode[*prometheusRule](t, prm[0])
	if !reflect.DeepEqual(pr.Spec, file) {
		t.Errorf("PrometheusRule %s groups differ from orderstatus-rules.yaml:\n got %+v\nwant %+v", pr.Name, pr.Spec, file)
	}
	// And as plain YAML, so that no field the types above leave out can differ either.
	var fileAny, prAny struct {
		Groups any `yaml:"groups"`
		Spec   struct {
			Groups any `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(data, &fileAny); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(prm[0].raw, &prAny); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fileAny.Groups, prAny.Spec.Groups) {
		t.Error("PrometheusRule spec.groups differs from orderstatus-rules.yaml's groups")
	}

	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	troubleshooting := map[string]bool{}
	section := ""
	for _, line := range strings.Split(string(readme), "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			section = strings.TrimPrefix(line, "## ")
		case strings.HasPrefix(line, "### ") && section == "Troubleshooting":
			troubleshooting[githubAnchor(strings.TrimPrefix(line, "### "))] = true
		}
	}
	const readmeURL = "https://github.com/paystatus/orderstatus/blob/main/README.md#"
	n := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			n++
			want := readmeURL + githubAnchor(r.Alert)
			if got := r.Annotations["runbook_url"]; got != want {
				t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, got, want)
			}
			if !troubleshooting[githubAnchor(r.Alert)] {
				t.Errorf("alert %s: README's Troubleshooting has no entry ### %s", r.Alert, r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatal("no alerts")
	}
}

// githubAnchor is the fragment GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

type nackStream struct {
	Name              string   `yaml:"name"`
	Description       string   `yaml:"description"`
	Subjects          []string `yaml:"subjects"`
	Retention         string   `yaml:"retention"`
	Storage           string   `yaml:"storage"`
	Replicas          int      `yaml:"replicas"`
	Discard           string   `yaml:"discard"`
	DuplicateWindow   string   `yaml:"duplicateWindow"`
	MaxAge            string   `yaml:"maxAge"`
	AllowMsgSchedules bool     `yaml:"allowMsgSchedules"`
}

type nackKeyValue struct {
	Bucket      string `yaml:"bucket"`
	Description string `yaml:"description"`
	History     int    `yaml:"history"`
	TTL         string `yaml:"ttl"`
	Storage     string `yaml:"storage"`
	Replicas    int    `yaml:"replicas"`
}

type nackConsumer struct {
	StreamName    string `yaml:"streamName"`
	DurableName   string `yaml:"durableName"`
	Description   string `yaml:"description"`
	FilterSubject string `yaml:"filterSubject"`
	DeliverPolicy string `yaml:"deliverPolicy"`
	AckPolicy     string `yaml:"ackPolicy"`
	AckWait       string `yaml:"ackWait"`
	MaxDeliver    int    `yaml:"maxDeliver"`
	MaxAckPending int    `yaml:"maxAckPending"`
	ReplayPolicy  string `yaml:"replayPolicy"`
	HeadersOnly   bool   `yaml:"headersOnly"`
	Replicas      int    `yaml:"replicas"`
}

// enum reads a NACK enum value with the jetstream type's own JSON names.
func enum(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(strconv.Quote(s)), v); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
}

func duration(t *testing.T, s string) time.Duration {
	t.Helper()
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The NACK resources are what the consumer provisions with the default configuration and
// nats.replicas: 3: streams and consumer as natsinfra.StreamConfigs and ConsumerConfig make
// them, KV buckets as a real server holds them after natsinfra.Provision, and no asset more
// or less.
func TestNACKResourcesMatchProvision(t *testing.T) {
	ms := manifests(t)
	cfg := config.Default()
	cfg.NATS.Replicas = 3

	want := map[string]jetstream.StreamConfig{}
	for _, sc := range natsinfra.StreamConfigs(cfg) {
		want[sc.Name] = sc
	}
	for _, m := range find(t, ms, "Stream") {
		var s nackStream
		decodeSpec(t, m, &s, true)
		got := jetstream.StreamConfig{Name: s.Name, Description: s.Description, Subjects: s.Subjects,
			Replicas: s.Replicas, Duplicates: duration(t, s.DuplicateWindow), MaxAge: duration(t, s.MaxAge),
			AllowMsgSchedules: s.AllowMsgSchedules}
		enum(t, s.Retention, &got.Retention)
		enum(t, s.Storage, &got.Storage)
		enum(t, s.Discard, &got.Discard)
		w, ok := want[s.Name]
		if !ok {
			t.Errorf("Stream %s: the consumer provisions no such stream", s.Name)
			continue
		}
		delete(want, s.Name)
		if !reflect.DeepEqual(got, w) {
			t.Errorf("Stream %s differs from what Provision creates:\n got %+v\nwant %+v", s.Name, got, w)
		}
	}
	for name := range want {
		t.Errorf("no NACK Stream for %s", name)
	}

	wantCons := map[string]struct {
		stream string
		cc     jetstream.ConsumerConfig
	}{
		natsinfra.ConsumerConfig(cfg).Durable:      {natsinfra.QueryStream, natsinfra.ConsumerConfig(cfg)},
		natsinfra.SweepConsumerConfig(cfg).Durable: {"KV_" + natsinfra.StateBucket, natsinfra.SweepConsumerConfig(cfg)},
		natsinfra.CallbackConsumer:                 {natsinfra.CallbackStream, natsinfra.CallbackConsumerConfig(cfg)},
	}
	for _, m := range find(t, ms, "Consumer") {
		var c nackConsumer
		decodeSpec(t, m, &c, true)
		got := jetstream.ConsumerConfig{Durable: c.DurableName, Description: c.Description, FilterSubject: c.FilterSubject,
			AckWait: duration(t, c.AckWait), MaxDeliver: c.MaxDeliver, MaxAckPending: c.MaxAckPending, HeadersOnly: c.HeadersOnly, Replicas: c.Replicas}
		enum(t, c.DeliverPolicy, &got.DeliverPolicy)
		enum(t, c.AckPolicy, &got.AckPolicy)
		enum(t, c.ReplayPolicy, &got.ReplayPolicy)
		w, ok := wantCons[c.DurableName]
		if !ok {
			t.Errorf("Consumer %s: the consumer provisions no such consumer", c.DurableName)
			continue
		}
		delete(wantCons, c.DurableName)
		if !reflect.DeepEqual(got, w.cc) || c.StreamName != w.stream {
			t.Errorf("Consumer %s on %s differs from what Provision creates on %s:\n got %+v\nwant %+v", c.DurableName, c.StreamName, w.stream, got, w.cc)
		}
	}
	for name := range wantCons {
		t.Errorf("no NACK Consumer for %s", name)
	}

	// The KV buckets as a real server holds them (one server: replicas 1 there).
	srv := natstest.RunServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := natsinfra.Provision(ctx, js, config.Default(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	buckets := map[string]bool{}
	names := js.KeyValueStoreNames(ctx)
	for n := range names.Name() {
		buckets[n] = true
	}
	for _, m := range find(t, ms, "KeyValue") {
		var kv nackKeyValue
		decodeSpec(t, m, &kv, true)
		if !buckets[kv.Bucket] {
			t.Errorf("KeyValue %s: the consumer provisions no such bucket", kv.Bucket)
			continue
		}
		delete(buckets, kv.Bucket)
		b, err := js.KeyValue(ctx, kv.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		st, err := b.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		info := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config
		var storage jetstream.StorageType
		enum(t, kv.Storage, &storage)
		if kv.History != int(st.History()) || duration(t, kv.TTL) != st.TTL() || storage != info.Storage ||
			kv.Description != info.Description || kv.Replicas != cfg.NATS.Replicas {
			t.Errorf("KeyValue %s: %+v; provisioned: history %d ttl %s storage %s description %q replicas %d",
				kv.Bucket, kv, st.History(), st.TTL(), info.Storage, info.Description, cfg.NATS.Replicas)
		}
	}
	for n := range buckets {
		t.Errorf("no NACK KeyValue for bucket %s", n)
	}
}

// instructions are a Dockerfile's instructions, continuation lines joined, comments left out.
func instructions(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	cont := false
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		next := strings.HasSuffix(line, `\`)
		line = strings.TrimSpace(strings.TrimSuffix(line, `\`))
		if cont {
			out[len(out)-1] += " " + line
		} else {
			out = append(out, line)
		}
		cont = next
	}
	return out
}

// stages splits instructions at each FROM.
func stages(ins []string) [][]string {
	var out [][]string
	for _, in := range ins {
		if strings.HasPrefix(strings.ToUpper(in), "FROM ") {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], in)
		}
	}
	return out
}

// finalStage is the instructions of a Dockerfile's last stage, with COPY sources left out
// (one stage copies from the build stage, the other from its context).
func finalStage(t *testing.T, path string) []string {
	t.Helper()
	st := stages(instructions(t, path))
	if len(st) == 0 {
		t.Fatalf("%s: no FROM", path)
	}
	var stage []string
	for _, in := range st[len(st)-1] {
		if fields := strings.Fields(in); strings.ToUpper(fields[0]) == "COPY" {
			in = "COPY " + fields[len(fields)-1]
		}
		stage = append(stage, in)
	}
	return stage
}

// The multi-stage Dockerfile and the registry-free Containerfile build the same final image,
// which exposes the port the Kubernetes config listens on.
func TestImageDefinitionsAgree(t *testing.T) {
	docker := finalStage(t, filepath.Join("..", "Dockerfile"))
	local := finalStage(t, filepath.Join("image", "Containerfile"))
	if !slices.Equal(docker, local) {
		t.Fatalf("final stages differ:\nDockerfile    %q\nContainerfile %q", docker, local)
	}
	for _, want := range []string{"FROM scratch", "USER 65532:65532", "EXPOSE 8080", `ENTRYPOINT ["/consumer"]`, "COPY /consumer"} {
		if !slices.Contains(docker, want) {
			t.Errorf("final stage lacks %q: %q", want, docker)
		}
	}
}

var (
	ldflagXRe   = regexp.MustCompile(`-X (\S+)=\$\((\w+)\)`)
	labelPairRe = regexp.MustCompile(`([a-z.]+)=("[^"]*"|\S+)`)
)

// args are the names an ARG instruction declares (ARG A B=x C).
func args(in string) []string {
	var out []string
	for _, f := range strings.Fields(in)[1:] {
		out = append(out, strings.SplitN(f, "=", 2)[0])
	}
	return out
}

// The Dockerfile builds on the builder's platform for the target's (TARGETOS, TARGETARCH), stamps
// VERSION and REVISION into internal/buildinfo with the Makefile's -X flags, and labels the
// image with the OCI annotations; `make image` passes the same build arguments to the
// Containerfile, whose final stage is the Dockerfile's (TestImageDefinitionsAgree).
func TestDockerfileStampsBuildAndLabels(t *testing.T) {
	st := stages(instructions(t, filepath.Join("..", "Dockerfile")))
	if len(st) != 2 {
		t.Fatalf("%d stages, want build and final", len(st))
	}
	build, final := st[0], st[1]
	if from := build[0]; !strings.HasPrefix(from, "FROM --platform=$BUILDPLATFORM golang:") || !strings.HasSuffix(from, " AS build") {
		t.Errorf("build stage %q: want FROM --platform=$BUILDPLATFORM golang:… AS build", from)
	}
	declared := func(stage []string, before string) []string {
		var out []string
		for _, in := range stage {
			if strings.HasPrefix(in, before) {
				break
			}
			if strings.HasPrefix(in, "ARG ") {
				out = append(out, args(in)...)
			}
		}
		return out
	}

	makefile, err := os.ReadFile(filepath.Join("..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	xs := ldflagXRe.FindAllStringSubmatch(string(makefile), -1)
	if len(xs) != 2 {
		t.Fatalf("Makefile LDFLAGS: %d -X flags, want version and revision", len(xs))
	}
	var run string
	for _, in := range build {
		if strings.HasPrefix(in, "RUN ") && strings.Contains(in, "go build") {
			run = in
		}
	}
	buildArgs := declared(build, "RUN "+strings.TrimPrefix(run, "RUN "))
	for _, want := range []string{"GOOS=$TARGETOS", "GOARCH=$TARGETARCH", "CGO_ENABLED=0"} {
		if !strings.Contains(run, want) {
			t.Errorf("build %q: no %s", run, want)
		}
	}
	for _, a := range []string{"TARGETOS", "TARGETARCH"} {
		if !slices.Contains(buildArgs, a) {
			t.Errorf("build stage declares no ARG %s before its go build", a)
		}
	}
	for _, x := range xs {
		if !strings.Contains(run, "-X "+x[1]+"=${"+x[2]+"}") {
			t.Errorf("build %q: no -X %s=${%s} (the Makefile's LDFLAGS)", run, x[1], x[2])
		}
		if !slices.Contains(buildArgs, x[2]) {
			t.Errorf("build stage declares no ARG %s before its go build", x[2])
		}
		if !regexp.MustCompile(`--build-arg ` + x[2] + `=\$\(` + x[2] + `\)`).Match(makefile) {
			t.Errorf("Makefile image target passes no --build-arg %s=$(%s)", x[2], x[2])
		}
	}
	if !regexp.MustCompile(`--build-arg CREATED=\$\(CREATED\)`).Match(makefile) {
		t.Error("Makefile image target passes no --build-arg CREATED=$(CREATED)")
	}

	labels := map[string]string{}
	for _, in := range final {
		if strings.HasPrefix(in, "LABEL ") {
			for _, m := range labelPairRe.FindAllStringSubmatch(in, -1) {
				labels[m[1]] = strings.Trim(m[2], `"`)
			}
		}
	}
	finalArgs := declared(final, "LABEL ")
	for key, want := range map[string]string{
		"org.opencontainers.image.title":    "orderstatus",
		"org.opencontainers.image.source":   "https://github.com/paystatus/orderstatus",
		"org.opencontainers.image.version":  "${VERSION}",
		"org.opencontainers.image.revision": "${REVISION}",
		"org.opencontainers.image.created":  "${CREATED}",
	} {
		if labels[key] != want {
			t.Errorf("final stage label %s=%q, want %q", key, labels[key], want)
		}
		if v, ok := strings.CutPrefix(want, "${"); ok && !slices.Contains(finalArgs, strings.TrimSuffix(v, "}")) {
			t.Errorf("final stage uses %s in a LABEL without an ARG for it before", want)
		}
	}
}

// nginxSize reads an nginx size ("64k", "1m", "512"): k and m are binary, as nginx reads them.
func nginxSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(strings.ToLower(s), "k"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(strings.ToLower(s), "m"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(strings.ToLower(s), "g"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

// components/callbacks with the Ingress example in an overlay, as an operator deploys them: the
// Ingress routes exactly the path of each provider the service takes notifications from, to
// the callbacks Service's port, over TLS; ingress-nginx refuses what the service would (bodies
// over callbacks.MaxBody) and waits for the service's answer. And the ConfigMap the component
// patches goes through the service's own validation: a wrong key or value stops the test.
func TestCallbacksComponent(t *testing.T) {
	ms := buildOverlay(t, []string{ingressExample}, "callbacks")
	for _, m := range ms {
		if _, err := strictDecode(m); err != nil {
			t.Error(err)
		}
	}
	cm := mustDecode[*corev1.ConfigMap](t, named(t, ms, "ConfigMap", "orderstatus-config"))
	dep := mustDecode[*appsv1.Deployment](t, named(t, ms, "Deployment", "orderstatus"))
	c := dep.Spec.Template.Spec.Containers[0]
	env := podEnv(t, c, cm)
	cfg := parseConfig(t, cm, env)
	checkCallbacks(t, ms, cfg, dep, true)

	provs, err := registry.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wantPaths []string
	for name := range callbacks.NotifiersOf(provs) {
		wantPaths = append(wantPaths, "/callbacks/"+name)
	}
	slices.Sort(wantPaths)
	if len(wantPaths) == 0 {
		t.Fatal("no configured provider sends notifications")
	}

	svc := mustDecode[*corev1.Service](t, named(t, ms, "Service", "orderstatus-callbacks"))
	ing := mustDecode[*networkingv1.Ingress](t, named(t, ms, "Ingress", "orderstatus-callbacks"))
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName == "" || ing.Spec.DefaultBackend != nil {
		t.Errorf("Ingress ingressClassName %v, defaultBackend %v: want a class and no default backend", ing.Spec.IngressClassName, ing.Spec.DefaultBackend)
	}
	tlsHosts := map[string]bool{}
	for _, tls := range ing.Spec.TLS {
		for _, h := range tls.Hosts {
			tlsHosts[h] = tls.SecretName != ""
		}
	}
	var paths []string
	for _, r := range ing.Spec.Rules {
		if r.Host == "" || !tlsHosts[r.Host] {
			t.Errorf("Ingress rule for host %q: want a host with a TLS Secret", r.Host)
		}
		if r.HTTP == nil {
			continue
		}
		for _, p := range r.HTTP.Paths {
			paths = append(paths, p.Path)
			var pt networkingv1.PathType
			if p.PathType != nil {
				pt = *p.PathType
			}
			if pt != networkingv1.PathTypeExact {
				t.Errorf("Ingress path %s: pathType %q, want Exact", p.Path, pt)
			}
			b := p.Backend.Service
			if b == nil || b.Name != svc.Name {
				t.Errorf("Ingress path %s: backend %+v, want the Service %s", p.Path, p.Backend, svc.Name)
				continue
			}
			found := false
			for _, sp := range svc.Spec.Ports {
				found = found || b.Port.Name != "" && b.Port.Name == sp.Name || b.Port.Number != 0 && b.Port.Number == sp.Port
			}
			if !found {
				t.Errorf("Ingress path %s: port %+v is not a port of the Service %s", p.Path, b.Port, svc.Name)
			}
		}
	}
	slices.Sort(paths)
	if !slices.Equal(paths, wantPaths) {
		t.Errorf("Ingress paths %v, want %v: the providers the service takes notifications from", paths, wantPaths)
	}

	const nginx = "nginx.ingress.kubernetes.io/"
	if size, err := nginxSize(ing.Annotations[nginx+"proxy-body-size"]); err != nil || size != callbacks.MaxBody {
		t.Errorf("Ingress %sproxy-body-size %q: want the service's bound, %d bytes", nginx, ing.Annotations[nginx+"proxy-body-size"], callbacks.MaxBody)
	}
	for _, a := range []string{"proxy-connect-timeout", "proxy-send-timeout", "proxy-read-timeout"} {
		secs, err := strconv.Atoi(ing.Annotations[nginx+a])
		if err != nil || secs <= 0 {
			t.Errorf("Ingress %s%s %q: want seconds", nginx, a, ing.Annotations[nginx+a])
		}
		if a == "proxy-read-timeout" && time.Duration(secs)*time.Second <= callbacks.DefaultWriteTimeout {
			t.Errorf("Ingress %s%s %d s: not above the service's write timeout %s, nginx may give up before the answer", nginx, a, secs, callbacks.DefaultWriteTimeout)
		}
	}

	// The service's validation holds the component's config to account: a misspelled key, or a
	// value that is no address, stops the start-up, and so this test.
	file := cm.Data["consumer.yaml"]
	re := regexp.MustCompile(`(?m)^(callbacks:\n\s+)listen:`)
	if !re.MatchString(file) {
		t.Fatal("consumer.yaml has no callbacks.listen")
	}
	if _, err := parseConsumerYAML(t, re.ReplaceAllString(file, "${1}listn:"), env); err == nil || !strings.Contains(err.Error(), "callbacks.listn") {
		t.Errorf("callbacks.listen misspelled: %v, want an error naming callbacks.listn", err)
	}
	bad := maps.Clone(env)
	bad["CALLBACKS_LISTEN"] = "8443"
	if _, err := parseConsumerYAML(t, file, bad); err == nil || !strings.Contains(err.Error(), "callbacks.listen") {
		t.Errorf("callbacks-listen 8443: %v, want an error naming callbacks.listen", err)
	}
}
