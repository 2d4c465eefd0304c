package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/natstest"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const contractExample = `
nats:
  url: nats://127.0.0.1:4222
  subject_prefix: orders
  replicas: 1
events:
  encoding: msgpack          # or json
  include_pii: false
http:
  listen: 127.0.0.1:8080     # /healthz, /readyz, /metrics; "" turns it off
providers:
  kuaishou:
    base_url: https://open.kuaishou.com
    qps: 30                  # per app_id and endpoint, across all replicas
    apps:
      - app_id: ks707065143182458884
        app_secret: ${KUAISHOU_APP_SECRET}
  kudian:
    base_url: https://kudian.example.com   # required when kudian apps are configured
    qps: 30
    apps:
      - app_id: kd100020200220
        app_secret: ${KUDIAN_APP_SECRET}
        token: ${KUDIAN_TOKEN}
`

func TestContractExample(t *testing.T) {
	cfg, err := Parse([]byte(contractExample), envOf(map[string]string{
		"KUAISHOU_APP_SECRET": "9VfzaT-7Jf1bBHv-veFZfg", "KUDIAN_APP_SECRET": "kds", "KUDIAN_TOKEN": "UT89",
	}))
	if err != nil {
		t.Fatal(err)
	}
	ks := cfg.Providers["kuaishou"]
	if ks.BaseURL != "https://open.kuaishou.com" || ks.QPS != 30 || ks.Timeout != 5*time.Second {
		t.Fatalf("kuaishou: %+v", ks)
	}
	if len(ks.Apps) != 1 || ks.Apps[0].AppID != "ks707065143182458884" || ks.Apps[0].AppSecret.Reveal() != "9VfzaT-7Jf1bBHv-veFZfg" {
		t.Fatalf("kuaishou apps: %+v", ks.Apps)
	}
	kd := cfg.Providers["kudian"]
	if kd.Apps[0].Token.Reveal() != "UT89" || kd.Apps[0].AppSecret.Reveal() != "kds" {
		t.Fatalf("kudian: %+v", kd)
	}
	if cfg.Consumer.Concurrency != 64 || cfg.Consumer.AckWait != 30*time.Second || cfg.NATS.DuplicateWindow != 5*time.Minute {
		t.Fatalf("defaults not applied: %+v %+v", cfg.Consumer, cfg.NATS)
	}
	if cfg.Events.Encoding != "msgpack" || cfg.HTTP.Listen != "127.0.0.1:8080" || cfg.Log.Format != "auto" {
		t.Fatalf("values: %+v %+v %+v", cfg.Events, cfg.HTTP, cfg.Log)
	}
}

func TestDefaultsAndOverrides(t *testing.T) {
	d := Default()
	if d.NATS.URL != "nats://127.0.0.1:4222" || d.NATS.SubjectPrefix != "orders" || d.NATS.Replicas != 1 || d.Consumer.MaxDeliver != 10 {
		t.Fatalf("%+v", d)
	}
	cfg, err := Parse([]byte("http:\n  listen: \"\"\nnats:\n  url: nats://a:1\n"), envOf(map[string]string{"NATS_URL": "nats://b:2", "NATS_CREDS": ""}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.URL != "nats://b:2" || cfg.HTTP.Listen != "" {
		t.Fatalf("got %q %q", cfg.NATS.URL, cfg.HTTP.Listen)
	}
	cfg, err = Parse([]byte("consumer:\n  concurrency: ${CONC:-8}\n  ack_wait: ${AW}\n"), envOf(map[string]string{"AW": "1m"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Consumer.Concurrency != 8 || cfg.Consumer.AckWait != time.Minute {
		t.Fatalf("%+v", cfg.Consumer)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	app := "providers:\n  kuaishou:\n    base_url: http://127.0.0.1:1\n    apps:\n      - app_id: a1\n        app_secret: s\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown top key", "natz: {}", "config: natz: unknown key"},
		{"second document", "nats:\n  url: nats://a:1\n---\nconsumer:\n  concurrency: 8\n", "config: line 3: a second YAML document (after ---): the configuration is one document"},
		{"unknown nested key", "providers:\n  kuaishou:\n    qsp: 3\n", "config: providers.kuaishou.qsp: unknown key"},
		{"unknown app key", strings.Replace(app, "app_secret", "secret", 1), "config: providers.kuaishou.apps[0].secret: unknown key"},
		{"not a number", "nats:\n  replicas: three\n", `config: nats.replicas: "three" is not a whole number`},
		{"bad duration", "consumer:\n  ack_wait: 30\n", `config: consumer.ack_wait: "30" is not a duration`},
		{"bad bool", "events:\n  include_pii: maybe\n", `config: events.include_pii: "maybe" is not true or false`},
		{"unset var", "providers:\n  kuaishou:\n    base_url: http://x\n    apps:\n      - app_id: a\n        app_secret: ${NOPE}\n", "config: providers.kuaishou.apps[0].app_secret: environment variable NOPE is not set"},
		{"bad encoding", "events:\n  encoding: xml\n", `config: events.encoding: must be msgpack or json, got "xml"`},
		{"replicas", "nats:\n  replicas: 0\n", "config: nats.replicas: must be 1 to 5"},
		{"prefix", "nats:\n  subject_prefix: 'a.>'\n", "config: nats.subject_prefix:"},
		{"dup window", "nats:\n  duplicate_window: 1m\n", "config: nats.duplicate_window: must be at least 2m"},
		{"qps", strings.Replace(app, "apps:", "qps: 0\n    apps:", 1), "config: providers.kuaishou.qps: must be at least 1"},
		{"base_url missing", "providers:\n  kuaishou:\n    apps:\n      - app_id: a\n        app_secret: s\n", "config: providers.kuaishou.base_url: is required when apps are configured"},
		{"base_url scheme", strings.Replace(app, "http://127.0.0.1:1", "ftp://x", 1), "config: providers.kuaishou.base_url:"},
		{"secret missing", strings.Replace(app, "        app_secret: s\n", "", 1), "config: providers.kuaishou.apps[0].app_secret: is required"},
		{"dup app", app + "      - app_id: a1\n        app_secret: t\n", `config: providers.kuaishou.apps[1].app_id: "a1" is configured twice`},
		{"apps not list", "providers:\n  kuaishou:\n    apps: 3\n", "config: providers.kuaishou.apps: must be a list"},
		{"section not map", "nats: 3\n", "config: nats: must be a mapping"},
		{"max ack pending", "consumer:\n  concurrency: 100\n  max_ack_pending: 10\n", "config: consumer.max_ack_pending:"},
		{"dlq max age under the duplicate window", "nats:\n  dlq_max_age: 1m\n", "config: nats.dlq_max_age: must be 0 (forever) or at least nats.duplicate_window (5m0s)"},
		{"http listen", "http:\n  listen: nowhere\n", "config: http.listen: \"nowhere\" is not host:port"},
		{"http listen port", "http:\n  listen: 127.0.0.1:99999\n", "config: http.listen: \"127.0.0.1:99999\" is not host:port"},
		{"callbacks listen", "callbacks:\n  listen: nowhere\n", "config: callbacks.listen: \"nowhere\" is not host:port"},
		{"callbacks on the probes port", "callbacks:\n  listen: 127.0.0.1:8080\n", "config: callbacks.listen: must differ from http.listen"},
		{"callbacks concurrency", "callbacks:\n  max_concurrent: 0\n", "config: callbacks.max_concurrent: must be 1 to 100000"},
		{"broken yaml", "nats: [", "config: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), envOf(nil))
			if err == nil {
				t.Fatal("no error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("not a *config.Error: %T", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %q, want prefix %q on one line", err, tc.want)
			}
		})
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	s := Secret("9VfzaT-7Jf1bBHv-veFZfg")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "secret", s, "app", App{AppID: "a", AppSecret: s, Token: s})
	j, _ := json.Marshal(App{AppSecret: s})
	for _, out := range []string{buf.String(), string(j), fmt.Sprint(s), fmt.Sprintf("%v %s %+v", s, s, App{AppSecret: s})} {
		if strings.Contains(out, "9VfzaT") {
			t.Fatalf("secret leaked: %s", out)
		}
	}
	if s.Reveal() != "9VfzaT-7Jf1bBHv-veFZfg" {
		t.Fatal("Reveal")
	}
}

func TestReferenceCoversEveryKey(t *testing.T) {
	ref := Reference()
	keys := map[string]Field{}
	for _, f := range ref {
		if f.Doc == "" {
			t.Errorf("%s has no doc", f.Key)
		}
		keys[f.Key] = f
	}
	for _, k := range []string{"nats.url", "nats.replicas", "events.encoding", "http.listen", "providers.<name>.qps", "providers.<name>.apps[].app_secret", "providers.<name>.result_codes"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("reference lacks %s", k)
		}
	}
	if keys["nats.subject_prefix"].Default != "orders" {
		t.Errorf("default: %+v", keys["nats.subject_prefix"])
	}
}

func TestResultCodes(t *testing.T) {
	cfg, err := Parse([]byte("providers:\n  kuaishou:\n    result_codes:\n      100200104: retryable\n      \"42\": permanent\n"), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Providers["kuaishou"].ResultCodes; got["100200104"] != "retryable" || got["42"] != "permanent" {
		t.Fatalf("%v", got)
	}
	if _, err := Parse([]byte("providers:\n  kuaishou:\n    result_codes: [1]\n"), envOf(nil)); err == nil ||
		!strings.HasPrefix(err.Error(), "config: providers.kuaishou.result_codes: must be a mapping") {
		t.Fatalf("%v", err)
	}
}

// FuzzParse: no configuration file panics start-up; every failure is one line naming a key.
func FuzzParse(f *testing.F) {
	f.Add(contractExample)
	f.Add("nats: {url: x}\nproviders: {kuaishou: {apps: [{app_id: a}]}}")
	f.Add("consumer:\n  ack_wait: ${X:-1s}\n")
	f.Add("a: &x [1]\nb: *x\n")
	f.Fuzz(func(t *testing.T, yaml string) {
		_, err := Parse([]byte(yaml), envOf(map[string]string{"KUAISHOU_APP_SECRET": "s", "KUDIAN_APP_SECRET": "s", "KUDIAN_TOKEN": "t"}))
		if err == nil {
			return
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("not a config error: %v", err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Fatalf("more than one line: %q", err)
		}
	})
}

// TestURLsAreRedacted: a nats://user:pass@ URL never appears whole in the config error or the
// connect error; its credentials are redacted.
func TestURLsAreRedacted(t *testing.T) {
	for in, want := range map[string]string{
		"nats://alice:s3cret@n1:4222":                "nats://xxxxx@n1:4222",
		"nats://tok3n@n1:4222, tls://bob:pw@n2:4222": "nats://xxxxx@n1:4222,tls://xxxxx@n2:4222",
		"nats://n1:4222":                             "nats://n1:4222",
		"nats://al ice:s3cret@n1:4222/%zz":           "nats://xxxxx@n1:4222/%zz",
		"alice:s3cret@n1":                            "xxxxx@n1",
	} {
		if got := RedactURL(in); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	_, err := Parse([]byte("nats:\n  url: \"nats://alice:s3cret@n1:4222/%zz\"\n"), envOf(nil))
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "nats.url") {
		t.Fatalf("config error %v: want nats.url named and the password hidden", err)
	}
	_, err = Parse([]byte("providers:\n  kuaishou:\n    base_url: \"ftp://alice:s3cret@h\"\n    apps:\n      - app_id: a\n        app_secret: s\n"), envOf(nil))
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "base_url") {
		t.Fatalf("config error %v: want base_url named and the password hidden", err)
	}
}

// ORDERS_STATE's retention must outlive a follow (30 days) plus the duplicate window.
func TestStateMaxAge(t *testing.T) {
	for body, wantErr := range map[string]bool{
		"nats: {state_max_age: 0s}":                          false,
		"nats: {state_max_age: 721h}":                        false,
		"nats: {state_max_age: 720h}":                        true,
		"nats: {state_max_age: 24h}":                         true,
		"nats: {state_max_age: 725h, duplicate_window: 10m}": false,
	} {
		_, err := Parse([]byte(body), envOf(nil))
		if (err != nil) != wantErr || err != nil && !strings.Contains(err.Error(), "nats.state_max_age") {
			t.Errorf("%s: %v", body, err)
		}
	}
	if d := Default().NATS.StateMaxAge; d != 35*24*time.Hour {
		t.Fatalf("default %s", d)
	}
}

// The authentication and TLS keys: one authentication at most, pairs complete, files readable,
// each mistake one line naming the key, and secrets from ${VAR} never printed.
func TestNATSAuthKeys(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	seed := file("user.nk", "SU-not-a-real-seed\n")
	creds := natstest.WriteCreds(t)
	good, _ := os.ReadFile(creds)
	// One character of the seed changed: the checksum no longer matches.
	badSum := []byte(string(good))
	seedAt := strings.Index(string(badSum), "\nSU") + 10
	if badSum[seedAt] == 'A' {
		badSum[seedAt] = 'B'
	} else {
		badSum[seedAt] = 'A'
	}
	corrupt := file("corrupt.creds", string(badSum))
	notCreds := file("not.creds", "creds")
	notPEM := file("ca.pem", "not a certificate")
	// A key pointing at a large file by mistake (a log, a disk image): refused without reading it all.
	huge := filepath.Join(dir, "huge.log")
	if f, err := os.Create(huge); err != nil {
		t.Fatal(err)
	} else if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	missing := filepath.Join(dir, "missing.pem")

	cfg, err := Parse([]byte("nats:\n  user: orders\n  password: ${NATS_PASSWORD}\n  provision: false\n"), envOf(map[string]string{"NATS_PASSWORD": "hunter2-x"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.User != "orders" || cfg.NATS.Password.Reveal() != "hunter2-x" || cfg.NATS.Provision {
		t.Fatalf("%+v", cfg.NATS)
	}
	if strings.Contains(fmt.Sprintf("%v %+v", cfg.NATS, cfg.NATS), "hunter2") {
		t.Fatal("password printed")
	}
	if !Default().NATS.Provision {
		t.Fatal("provision is on by default")
	}
	if _, err := Parse([]byte("nats:\n  creds: "+creds+"\n"), envOf(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse([]byte("nats:\n  nkey_file: "+seed+"\n"), envOf(nil)); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"two modes", "nats:\n  nkey_file: " + seed + "\n  token: t0k\n", nil, "config: nats.token: cannot be used with nats.nkey_file"},
		{"creds from env and user", "nats:\n  user: u\n  password: p\n", map[string]string{"NATS_CREDS": creds}, "config: nats.user: cannot be used with nats.creds"},
		{"user without password", "nats:\n  user: u\n", nil, "config: nats.password: is required with nats.user"},
		{"password without user", "nats:\n  password: p\n", nil, "config: nats.user: is required with nats.password"},
		{"creds bad checksum", "nats:\n  creds: " + corrupt + "\n", nil, "config: nats.creds: " + corrupt + " holds no user nkey seed: nkeys: invalid checksum"},
		{"not a creds file", "nats:\n  creds: " + notCreds + "\n", nil, "config: nats.creds: " + notCreds + " holds no user JWT"},
		{"creds from env", "", map[string]string{"NATS_CREDS": notCreds}, "config: nats.creds: " + notCreds + " holds no user JWT"},
		{"unreadable creds", "nats:\n  creds: " + missing + "\n", nil, "config: nats.creds: cannot read " + missing + ": no such file"},
		{"creds a huge file", "nats:\n  creds: " + huge + "\n", nil, "config: nats.creds: " + huge + " is larger than 1048576 bytes"},
		{"ca a huge file", "nats:\n  tls:\n    ca_file: " + huge + "\n", nil, "config: nats.tls.ca_file: " + huge + " is larger than 1048576 bytes"},
		{"unreadable nkey", "nats:\n  nkey_file: " + missing + "\n", nil, "config: nats.nkey_file: cannot read"},
		{"unreadable ca", "nats:\n  tls:\n    ca_file: " + missing + "\n", nil, "config: nats.tls.ca_file: cannot read"},
		{"ca not pem", "nats:\n  tls:\n    ca_file: " + notPEM + "\n", nil, "config: nats.tls.ca_file: " + notPEM + " holds no PEM certificate"},
		{"cert without key", "nats:\n  tls:\n    cert_file: " + notPEM + "\n", nil, "config: nats.tls.key_file: is required with nats.tls.cert_file"},
		{"key without cert", "nats:\n  tls:\n    key_file: " + notPEM + "\n", nil, "config: nats.tls.cert_file: is required with nats.tls.key_file"},
		{"cert not a cert", "nats:\n  tls:\n    cert_file: " + notPEM + "\n    key_file: " + seed + "\n", nil, "config: nats.tls.cert_file: with nats.tls.key_file:"},
		{"unset password var", "nats:\n  user: u\n  password: ${NOPE}\n", nil, "config: nats.password: environment variable NOPE is not set"},
		{"unknown tls key", "nats:\n  tls:\n    ca: x\n", nil, "config: nats.tls.ca: unknown key (known: ca_file, cert_file, key_file)"},
		{"provision not bool", "nats:\n  provision: no-thanks\n", nil, `config: nats.provision: "no-thanks" is not true or false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), envOf(tc.env))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %q, want prefix %q on one line", err, tc.want)
			}
		})
	}
}

// A provider call may take at most a minute: answers are ordered by when their query was sent,
// and none may come back later than that.
func TestProviderTimeoutBounded(t *testing.T) {
	base := "providers:\n  kuaishou:\n    base_url: http://x\n    timeout: %s\n    apps:\n      - app_id: a\n        app_secret: s\n"
	for v, wantErr := range map[string]bool{"5s": false, "1m": false, "61s": true, "30m": true, "0s": true, "-1s": true} {
		_, err := Parse([]byte(fmt.Sprintf(base, v)), envOf(nil))
		if (err != nil) != wantErr || err != nil && !strings.Contains(err.Error(), "providers.kuaishou.timeout") {
			t.Errorf("timeout %s: %v", v, err)
		}
	}
}
