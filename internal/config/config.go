// Package config reads the consumer's YAML configuration (CONTRACT.md section 5).
//
// Every key is declared once, on a struct field: its YAML name, its default and its description
// (tags `yaml`, `default`, `doc`). Loading walks the YAML tree against those declarations, so an
// unknown key, a value of the wrong type, an unset ${VAR} or a failed check is reported as one
// line naming the full key, and Reference() renders the documentation from the same tags.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
	Callbacks Callbacks           `yaml:"callbacks"`
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
	DLQMaxAge       time.Duration `yaml:"dlq_max_age" default:"0s" doc:"How long ORDERS_DLQ keeps dead letters; 0 keeps them forever, else at least duplicate_window."`
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

// Callbacks is the internet-facing endpoint provider notifications arrive on (CONTRACT.md
// section 8), apart from the operational one.
type Callbacks struct {
	Listen        string `yaml:"listen" doc:"Address of POST /callbacks/kuaishou, the endpoint Kuaishou's notifications are sent to (behind TLS termination), e.g. 0.0.0.0:8443; empty turns it off. A gateway may instead publish them on <prefix>.callback.kuaishou."`
	MaxConcurrent int    `yaml:"max_concurrent" default:"256" doc:"Notifications verified and stored at once on callbacks.listen (a body still arriving holds no place); one more is answered 503 and sent again by the provider."`
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
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, &Error{Msg: oneLine(err)}
	}
	var next yaml.Node // a second document would be ignored: refused, not silently dropped
	if err := dec.Decode(&next); err == nil && len(next.Content) > 0 && next.Content[0].Tag != "!!null" {
		return nil, &Error{Msg: fmt.Sprintf("line %d: a second YAML document (after ---): the configuration is one document", next.Line)}
	} else if err != nil && !errors.Is(err, io.EOF) {
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
