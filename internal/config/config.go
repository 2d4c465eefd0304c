// Package config reads the consumer's YAML configuration (CONTRACT.md section 5).
//
// Every key is declared once, on a struct field: its YAML name, its default and its description
// (tags `yaml`, `default`, `doc`). Loading walks the YAML tree against those declarations, so an
// unknown key, a value of the wrong type, an unset ${VAR} or a failed check is reported as one
// line naming the full key, and Reference() renders the documentation from the same tags.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration.
type Config struct {
	NATS      NATS                `yaml:"nats"`
	Consumer  Consumer            `yaml:"consumer"`
	Events    Events              `yaml:"events"`
	HTTP      HTTP                `yaml:"http"`
	Log       Log                 `yaml:"log"`
	Providers map[string]Provider `yaml:"providers" doc:"Providers by name (kuaishou, kudian); a provider with no apps may be left out."`
}

// NATS is how the consumer reaches NATS and shapes its streams.
type NATS struct {
	URL             string        `yaml:"url" default:"nats://127.0.0.1:4222" doc:"NATS server URL(s), comma separated. The NATS_URL environment variable overrides it."`
	Creds           string        `yaml:"creds" doc:"Path to a NATS .creds file (user JWT and nkey seed). The NATS_CREDS environment variable overrides it. One authentication of creds, nkey_file, user and password, or token."`
	NkeyFile        string        `yaml:"nkey_file" doc:"Path to a file holding an nkey user seed (SU...), as nats --nkey takes it."`
	User            string        `yaml:"user" doc:"User name; needs nats.password."`
	Password        Secret        `yaml:"password" doc:"Password of nats.user (use ${VAR})."`
	Token           Secret        `yaml:"token" doc:"Authentication token (use ${VAR})."`
	TLS             TLS           `yaml:"tls"`
	Provision       bool          `yaml:"provision" default:"true" doc:"Create or update the streams, KV buckets and durable consumer at start. false: only bind to the ones an operator made (deploy/nats), needing no JetStream admin rights; a missing one is reported and waited for (not ready)."`
	SubjectPrefix   string        `yaml:"subject_prefix" default:"orders" doc:"First token of every subject: <prefix>.query.>, <prefix>.status.>, <prefix>.dlq.>, <prefix>.lookup.>."`
	Replicas        int           `yaml:"replicas" default:"1" doc:"Replicas of the streams and KV buckets: 1 on one server, 3 in a cluster."`
	DuplicateWindow time.Duration `yaml:"duplicate_window" default:"5m" doc:"Duplicate window of ORDERS_STATUS (at least 2m) and of ORDERS_QUERY: a redelivered request inside it never gives a second event."`
	StatusMaxAge    time.Duration `yaml:"status_max_age" default:"168h" doc:"How long ORDERS_STATUS keeps events; 0 keeps them forever. Lowering it on a running system is refused (it would delete events)."`
	StateMaxAge     time.Duration `yaml:"state_max_age" default:"840h" doc:"How long ORDERS_STATE keeps an order after its last change (35 days); 0 keeps orders forever (about 0.5 GB of server memory per million). At least 30 days plus duplicate_window, as a follow may last 30 days; an order asked about after it expired counts as first observed again."`
	DLQMaxAge       time.Duration `yaml:"dlq_max_age" default:"0s" doc:"How long ORDERS_DLQ keeps dead letters; 0 keeps them forever."`
}

// TLS is how the connection to NATS is encrypted and, with a client certificate, authenticated.
type TLS struct {
	CAFile   string `yaml:"ca_file" doc:"PEM file of the CA(s) that signed the NATS server's certificate; setting any tls key turns TLS on (a tls:// URL does too, with the system's CAs)."`
	CertFile string `yaml:"cert_file" doc:"PEM client certificate for mutual TLS; needs nats.tls.key_file."`
	KeyFile  string `yaml:"key_file" doc:"PEM private key of nats.tls.cert_file."`
}

// Enabled reports whether any TLS key is set.
func (t TLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Consumer shapes the durable pull consumer and the work done in this process.
type Consumer struct {
	Name           string        `yaml:"name" default:"orders-query" doc:"Durable consumer name on ORDERS_QUERY, shared by every replica."`
	Concurrency    int           `yaml:"concurrency" default:"64" doc:"Provider calls this process makes at once; requests waiting for their app's limit do not take one."`
	AckWait        time.Duration `yaml:"ack_wait" default:"30s" doc:"Time a request may stay unacknowledged before JetStream redelivers it; work in progress extends it."`
	MaxDeliver     int           `yaml:"max_deliver" default:"10" doc:"Deliveries of one request before it is dead-lettered as retries_exhausted; each delivery first retries in-process for up to min(ack_wait/3, 10s)."`
	FollowDelay    time.Duration `yaml:"follow_delay" default:"5s" doc:"First wait of a follow request before it asks again; each next wait is three times longer."`
	FollowMaxDelay time.Duration `yaml:"follow_max_delay" default:"5m" doc:"Longest wait between two queries of a follow request."`
	LookupTimeout  time.Duration `yaml:"lookup_timeout" default:"10s" doc:"Longest a synchronous lookup may take; a caller may ask for less with a Request-Timeout header (a duration such as 2s). Past it the reply is the error code timeout."`
	MaxAckPending  int           `yaml:"max_ack_pending" default:"20000" doc:"Requests in flight across all replicas together, waiting for their app's limit included: it bounds how big one app's backlog may grow before other apps' requests wait behind it."`
}

// Events shapes the status-changed events.
type Events struct {
	Encoding   string `yaml:"encoding" default:"msgpack" doc:"Encoding of status events: msgpack or json."`
	IncludePII bool   `yaml:"include_pii" default:"false" doc:"Put member phone and name (Kudian) in event details."`
}

// HTTP is the operational HTTP endpoint.
type HTTP struct {
	Listen string `yaml:"listen" default:"127.0.0.1:8080" doc:"Address of /healthz, /readyz and /metrics; empty turns HTTP off."`
}

// Log shapes the process log.
type Log struct {
	Level  string `yaml:"level" default:"info" doc:"debug, info, warn or error."`
	Format string `yaml:"format" default:"auto" doc:"auto (colour on a terminal, JSON otherwise), text or json. The --log-format flag overrides it."`
}

// Provider configures one payment provider.
type Provider struct {
	BaseURL string        `yaml:"base_url" doc:"Base URL of the provider's API; required when apps are configured."`
	QPS     int           `yaml:"qps" default:"30" doc:"Calls per second per app and endpoint, across all replicas together."`
	Timeout time.Duration `yaml:"timeout" default:"5s" doc:"Time limit of one HTTP call to the provider; at most 1m."`
	Apps    []App         `yaml:"apps" doc:"The merchant apps this provider is queried for."`
	// ResultCodes maps a provider result code to its class; the providers publish few codes.
	ResultCodes map[string]string `yaml:"result_codes" doc:"Class of provider result codes, over the built-in table: code: retryable, rate_limited, token_invalid or permanent. A code in neither is retryable, within consumer.max_deliver."`
}

// App is one merchant app at a provider.
type App struct {
	AppID     string `yaml:"app_id" doc:"Kuaishou app_id or Kudian open_app_id."`
	AppSecret Secret `yaml:"app_secret" doc:"Signing secret of the app (use ${VAR})."`
	Token     Secret `yaml:"token" doc:"Kudian merchant token (use ${VAR}); Kuaishou fetches access tokens itself."`
}

// Secret is a string that never prints: logs, errors and JSON see "[redacted]".
type Secret string

// Reveal returns the secret itself, for the one place that signs with it.
func (s Secret) Reveal() string { return string(s) }

// String redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// LogValue redacts the secret in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON redacts the secret in JSON output.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// Error is a configuration error naming the key it is about.
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return "config: " + e.Msg
	}
	return "config: " + e.Key + ": " + e.Msg
}

func keyErr(key, format string, args ...any) error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Load reads, expands, defaults and checks the configuration file at path. env looks up
// environment variables (os.LookupEnv in production).
func Load(path string, env func(string) (string, bool)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Msg: err.Error()}
	}
	return Parse(data, env)
}

// Parse is Load on the file's bytes.
func Parse(data []byte, env func(string) (string, bool)) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &Error{Msg: oneLine(err)}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	} else if doc.Kind == 0 { // empty file: all defaults
		doc = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	if err := prepare(doc, configType, "", env); err != nil {
		return nil, err
	}
	var cfg Config
	if err := doc.Decode(&cfg); err != nil { // prepare checked every value: not expected
		return nil, &Error{Msg: oneLine(err)}
	}
	if v, ok := env("NATS_URL"); ok && v != "" {
		cfg.NATS.URL = v
	}
	if v, ok := env("NATS_CREDS"); ok && v != "" {
		cfg.NATS.Creds = v
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// oneLine renders a YAML error on one line.
func oneLine(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors:\n  ")
	return strings.Join(strings.Fields(s), " ")
}

// Default is the configuration of an empty file.
func Default() *Config {
	cfg, err := Parse(nil, func(string) (string, bool) { return "", false })
	if err != nil {
		panic(err) // the declared defaults are wrong: a programming error caught by the tests
	}
	return cfg
}

var (
	tokenRe   = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	appIDRe   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	logLevels = map[string]bool{"debug": true, "info": true, "warn": true, "error": true}
)

// Validate checks values the types alone do not.
func (c *Config) Validate() error {
	if c.NATS.URL == "" {
		return keyErr("nats.url", "is required")
	}
	for _, u := range strings.Split(c.NATS.URL, ",") {
		if _, err := url.Parse(strings.TrimSpace(u)); err != nil || strings.TrimSpace(u) == "" {
			return keyErr("nats.url", "%q is not a URL", RedactURL(u))
		}
	}
	if err := c.NATS.validateAuth(); err != nil {
		return err
	}
	for _, tok := range strings.Split(c.NATS.SubjectPrefix, ".") {
		if !tokenRe.MatchString(tok) {
			return keyErr("nats.subject_prefix", "%q is not a subject prefix (tokens of letters, digits, - and _, joined by dots)", c.NATS.SubjectPrefix)
		}
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		return keyErr("nats.replicas", "must be 1 to 5, got %d", c.NATS.Replicas)
	}
	if c.NATS.DuplicateWindow < 2*time.Minute {
		return keyErr("nats.duplicate_window", "must be at least 2m, got %s", c.NATS.DuplicateWindow)
	}
	if c.NATS.StatusMaxAge != 0 && c.NATS.StatusMaxAge < c.NATS.DuplicateWindow {
		return keyErr("nats.status_max_age", "must be 0 (forever) or at least nats.duplicate_window (%s)", c.NATS.DuplicateWindow)
	}
	if c.NATS.DLQMaxAge < 0 {
		return keyErr("nats.dlq_max_age", "must not be negative")
	}
	if !tokenRe.MatchString(c.Consumer.Name) {
		return keyErr("consumer.name", "%q may hold only letters, digits, - and _", c.Consumer.Name)
	}
	if c.Consumer.Concurrency < 1 || c.Consumer.Concurrency > 10000 {
		return keyErr("consumer.concurrency", "must be 1 to 10000, got %d", c.Consumer.Concurrency)
	}
	if c.Consumer.AckWait < time.Second {
		return keyErr("consumer.ack_wait", "must be at least 1s, got %s", c.Consumer.AckWait)
	}
	if min := 30*24*time.Hour + c.NATS.DuplicateWindow; c.NATS.StateMaxAge != 0 && c.NATS.StateMaxAge < min {
		return keyErr("nats.state_max_age", "must be 0 (forever) or at least %s (30 days of follow plus nats.duplicate_window), got %s", min, c.NATS.StateMaxAge)
	}
	if c.Consumer.LookupTimeout < 100*time.Millisecond || c.Consumer.LookupTimeout > 5*time.Minute {
		return keyErr("consumer.lookup_timeout", "must be 100ms to 5m, got %s", c.Consumer.LookupTimeout)
	}
	if c.Consumer.MaxDeliver < 1 {
		return keyErr("consumer.max_deliver", "must be at least 1, got %d", c.Consumer.MaxDeliver)
	}
	if c.Consumer.FollowDelay < time.Second {
		return keyErr("consumer.follow_delay", "must be at least 1s, got %s", c.Consumer.FollowDelay)
	}
	if c.Consumer.FollowMaxDelay < c.Consumer.FollowDelay {
		return keyErr("consumer.follow_max_delay", "must be at least consumer.follow_delay (%s)", c.Consumer.FollowDelay)
	}
	if c.Consumer.MaxAckPending < c.Consumer.Concurrency {
		return keyErr("consumer.max_ack_pending", "must be at least consumer.concurrency (%d), got %d", c.Consumer.Concurrency, c.Consumer.MaxAckPending)
	}
	if c.Events.Encoding != "msgpack" && c.Events.Encoding != "json" {
		return keyErr("events.encoding", "must be msgpack or json, got %q", c.Events.Encoding)
	}
	if !logLevels[c.Log.Level] {
		return keyErr("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "auto" && c.Log.Format != "text" && c.Log.Format != "json" {
		return keyErr("log.format", "must be auto, text or json, got %q", c.Log.Format)
	}
	for name, p := range c.Providers {
		key := "providers." + name
		if len(p.Apps) > 0 && p.BaseURL == "" {
			return keyErr(key+".base_url", "is required when apps are configured")
		}
		if p.BaseURL != "" {
			u, err := url.Parse(p.BaseURL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return keyErr(key+".base_url", "%q is not an http(s) URL", RedactURL(p.BaseURL))
			}
		}
		if p.QPS < 1 {
			return keyErr(key+".qps", "must be at least 1, got %d", p.QPS)
		}
		if p.Timeout <= 0 || p.Timeout > time.Minute {
			// At most a minute: a later answer is an outage, and ordering answers by when
			// their query was sent assumes none comes back minutes late.
			return keyErr(key+".timeout", "must be more than 0 and at most 1m, got %s", p.Timeout)
		}
		seen := map[string]bool{}
		for i, app := range p.Apps {
			akey := fmt.Sprintf("%s.apps[%d]", key, i)
			if !appIDRe.MatchString(app.AppID) {
				return keyErr(akey+".app_id", "%q is not an app id (1 to 64 letters, digits, - or _)", app.AppID)
			}
			if seen[app.AppID] {
				return keyErr(akey+".app_id", "%q is configured twice", app.AppID)
			}
			seen[app.AppID] = true
			if app.AppSecret == "" {
				return keyErr(akey+".app_secret", "is required")
			}
		}
	}
	return nil
}

// validateAuth checks the authentication and TLS keys: one authentication at most, a user
// with its password, a client certificate with its key, and every file readable and of its kind.
func (n *NATS) validateAuth() error {
	var modes []string
	for _, m := range []struct {
		key string
		set bool
	}{{"nats.creds", n.Creds != ""}, {"nats.nkey_file", n.NkeyFile != ""}, {"nats.user", n.User != "" || n.Password != ""}, {"nats.token", n.Token != ""}} {
		if m.set {
			modes = append(modes, m.key)
		}
	}
	if len(modes) > 1 {
		return keyErr(modes[1], "cannot be used with %s: choose one authentication", modes[0])
	}
	if n.User != "" && n.Password == "" {
		return keyErr("nats.password", "is required with nats.user")
	}
	if n.Password != "" && n.User == "" {
		return keyErr("nats.user", "is required with nats.password")
	}
	for _, f := range []struct{ key, path string }{{"nats.creds", n.Creds}, {"nats.nkey_file", n.NkeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := readFile(f.key, f.path); err != nil {
			return err
		}
	}
	if n.TLS.CAFile != "" {
		pem, err := readFile("nats.tls.ca_file", n.TLS.CAFile)
		if err != nil {
			return err
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return keyErr("nats.tls.ca_file", "%s holds no PEM certificate", n.TLS.CAFile)
		}
	}
	switch {
	case n.TLS.CertFile != "" && n.TLS.KeyFile == "":
		return keyErr("nats.tls.key_file", "is required with nats.tls.cert_file")
	case n.TLS.KeyFile != "" && n.TLS.CertFile == "":
		return keyErr("nats.tls.cert_file", "is required with nats.tls.key_file")
	case n.TLS.CertFile != "":
		if _, err := readFile("nats.tls.cert_file", n.TLS.CertFile); err != nil {
			return err
		}
		if _, err := readFile("nats.tls.key_file", n.TLS.KeyFile); err != nil {
			return err
		}
		if _, err := tls.LoadX509KeyPair(n.TLS.CertFile, n.TLS.KeyFile); err != nil {
			return keyErr("nats.tls.cert_file", "with nats.tls.key_file: %s", oneLine(err))
		}
	}
	return nil
}

// readFile reads the file a key names, as an error naming the key if it cannot.
func readFile(key, path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, keyErr(key, "cannot read %s: %v", path, err)
	}
	return data, nil
}

// RedactURL hides the user information (user, password or token) of every URL in a comma
// separated list, for logs and errors. One that does not parse as such loses everything
// between "//" (or its start) and its last "@".
func RedactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = url.User("xxxxx")
			parts[i] = u.String()
			continue
		}
		if at := strings.LastIndex(p, "@"); at >= 0 {
			start := strings.Index(p, "//")
			if start < 0 || start > at {
				start = -2
			}
			parts[i] = p[:start+2] + "xxxxx" + p[at:]
		}
	}
	return strings.Join(parts, ",")
}
