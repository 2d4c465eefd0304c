// Package deploy_test checks the deployment files against the service they deploy: the
// Kubernetes manifests against its configuration and the assets it provisions, the Grafana
// dashboard and the Prometheus rules against the metrics it registers, and the image
// definitions against each other.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
)

// manifest is one YAML document of deploy/kubernetes, its spec kept raw until its kind is known.
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
}

// manifests reads every document of every YAML file in deploy/kubernetes.
func manifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var out []manifest
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var m manifest
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if m.Kind == "" || m.APIVersion == "" {
				t.Fatalf("%s: a document without kind or apiVersion", f)
			}
			m.file = filepath.Base(f)
			out = append(out, m)
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

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type deploymentSpec struct {
	Replicas int `yaml:"replicas"`
	Template struct {
		Spec struct {
			TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
			Containers                    []struct {
				Args  []string `yaml:"args"`
				Ports []struct {
					Name          string `yaml:"name"`
					ContainerPort int    `yaml:"containerPort"`
				} `yaml:"ports"`
				Env []struct {
					Name      string `yaml:"name"`
					Value     string `yaml:"value"`
					ValueFrom struct {
						SecretKeyRef struct {
							Name string `yaml:"name"`
							Key  string `yaml:"key"`
						} `yaml:"secretKeyRef"`
					} `yaml:"valueFrom"`
				} `yaml:"env"`
				VolumeMounts []struct {
					Name      string `yaml:"name"`
					MountPath string `yaml:"mountPath"`
					SubPath   string `yaml:"subPath"`
				} `yaml:"volumeMounts"`
				ReadinessProbe probe `yaml:"readinessProbe"`
				LivenessProbe  probe `yaml:"livenessProbe"`
				Resources      struct {
					Requests map[string]string `yaml:"requests"`
				} `yaml:"resources"`
			} `yaml:"containers"`
			Volumes []struct {
				Name      string `yaml:"name"`
				ConfigMap struct {
					Name string `yaml:"name"`
				} `yaml:"configMap"`
				Secret struct {
					SecretName string `yaml:"secretName"`
					Items      []struct {
						Key  string `yaml:"key"`
						Path string `yaml:"path"`
					} `yaml:"items"`
				} `yaml:"secret"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

var varRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)

// The ConfigMap's consumer.yaml passes the service's own validation with the environment the
// Deployment gives it; the probes, ports, mounts and grace period agree with that config.
func TestKubernetesManifestsAgreeWithConfig(t *testing.T) {
	ms := manifests(t)
	cm := find(t, ms, "ConfigMap")[0]
	file, ok := cm.Data["consumer.yaml"]
	if !ok {
		t.Fatal("ConfigMap has no consumer.yaml")
	}
	var d deploymentSpec
	dep := find(t, ms, "Deployment")[0]
	decodeSpec(t, dep, &d, false)
	pod := d.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]

	// The environment the pod has: every ${VAR} of the config must be set by the Deployment.
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.Value != "":
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef.Name != "":
			env[e.Name] = "from-secret-" + e.ValueFrom.SecretKeyRef.Key
		default:
			t.Errorf("env %s has neither a value nor a secretKeyRef", e.Name)
		}
	}
	for _, m := range varRe.FindAllStringSubmatch(file, -1) {
		if _, ok := env[m[1]]; !ok {
			t.Errorf("consumer.yaml uses ${%s}, which the Deployment does not set", m[1])
		}
	}
	if strings.HasPrefix(env["KUDIAN_BASE_URL"], "from-secret-") {
		env["KUDIAN_BASE_URL"] = "https://kudian.invalid"
	}
	// NATS_CREDS names the mounted creds file; validation reads it, so give it a real one.
	credsPath := env["NATS_CREDS"]
	if credsPath == "" {
		t.Fatal("the Deployment sets no NATS_CREDS")
	}
	localCreds := natstest.WriteCreds(t)
	lookup := func(k string) (string, bool) {
		if k == "NATS_CREDS" {
			return localCreds, true
		}
		v, ok := env[k]
		return v, ok
	}
	cfg, err := config.Parse([]byte(file), lookup)
	if err != nil {
		t.Fatalf("ConfigMap consumer.yaml: %v", err)
	}

	// The creds file is where a Secret volume puts it.
	credsMounted := false
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.Secret.SecretName == "" {
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
			if v.Name == vm.Name && v.ConfigMap.Name == cm.Metadata.Name && vm.SubPath == "consumer.yaml" &&
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
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	resolve := func(p string) int {
		if n, err := strconv.Atoi(p); err == nil {
			return n
		}
		return ports[p]
	}
	for _, pr := range []struct {
		name string
		p    probe
		path string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if pr.p.HTTPGet.Path != pr.path || resolve(pr.p.HTTPGet.Port) != port {
			t.Errorf("%s probe %s on port %d, want %s on %d", pr.name, pr.p.HTTPGet.Path, resolve(pr.p.HTTPGet.Port), pr.path, port)
		}
	}

	// The pod outlives the consumer's shutdown: 2/3 of ack_wait, then a few seconds to exit.
	grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second
	if shutdown := cfg.Consumer.AckWait * 2 / 3; grace < shutdown+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %s: the consumer may take %s to stop (2/3 of consumer.ack_wait) plus its exit", grace, shutdown)
	}
	if d.Replicas != 3 {
		t.Errorf("replicas %d, want 3", d.Replicas)
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" {
		t.Errorf("resource requests %v: want cpu and memory", c.Resources.Requests)
	}
	if cfg.NATS.Replicas != 3 {
		t.Errorf("nats.replicas %d in the ConfigMap, want 3 (the NACK resources' replicas)", cfg.NATS.Replicas)
	}

	// The Service sends its http port to the container's; the ServiceMonitor scrapes /metrics there.
	var svc struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	decodeSpec(t, find(t, ms, "Service")[0], &svc, false)
	if len(svc.Ports) != 1 || resolve(svc.Ports[0].TargetPort) != port {
		t.Errorf("Service ports %+v do not reach http.listen's port %d", svc.Ports, port)
	}
	var sm struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Endpoints []struct {
			Port     string `yaml:"port"`
			Path     string `yaml:"path"`
			Interval string `yaml:"interval"`
		} `yaml:"endpoints"`
	}
	smm := find(t, ms, "ServiceMonitor")[0]
	decodeSpec(t, smm, &sm, false)
	if len(sm.Endpoints) != 1 || sm.Endpoints[0].Path != "/metrics" || sm.Endpoints[0].Port != svc.Ports[0].Name {
		t.Errorf("ServiceMonitor endpoints %+v: want /metrics on port %s", sm.Endpoints, svc.Ports[0].Name)
	}
	for k, v := range sm.Selector.MatchLabels {
		if find(t, ms, "Service")[0].Metadata.Labels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, which the Service is not labelled with", k, v)
		}
	}
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

	cons := find(t, ms, "Consumer")
	if len(cons) != 1 {
		t.Fatalf("%d NACK Consumers, want 1", len(cons))
	}
	var c nackConsumer
	decodeSpec(t, cons[0], &c, true)
	got := jetstream.ConsumerConfig{Durable: c.DurableName, Description: c.Description, FilterSubject: c.FilterSubject,
		AckWait: duration(t, c.AckWait), MaxDeliver: c.MaxDeliver, MaxAckPending: c.MaxAckPending, Replicas: c.Replicas}
	enum(t, c.DeliverPolicy, &got.DeliverPolicy)
	enum(t, c.AckPolicy, &got.AckPolicy)
	enum(t, c.ReplayPolicy, &got.ReplayPolicy)
	if w := natsinfra.ConsumerConfig(cfg); !reflect.DeepEqual(got, w) || c.StreamName != natsinfra.QueryStream {
		t.Errorf("Consumer on %s differs from what Provision creates:\n got %+v\nwant %+v", c.StreamName, got, w)
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

// finalStage is the instructions after a Dockerfile's last FROM, with COPY sources left out
// (one stage copies from the build stage, the other from its context).
func finalStage(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stage []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			stage = []string{line}
		case "COPY":
			stage = append(stage, "COPY "+fields[len(fields)-1])
		default:
			stage = append(stage, line)
		}
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
