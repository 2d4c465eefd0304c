package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
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
	if c.NATS.DLQMaxAge != 0 && c.NATS.DLQMaxAge < c.NATS.DuplicateWindow {
		// JetStream refuses a stream whose duplicate window is longer than its max age.
		return keyErr("nats.dlq_max_age", "must be 0 (forever) or at least nats.duplicate_window (%s)", c.NATS.DuplicateWindow)
	}
	if c.HTTP.Listen != "" {
		// Checked here, not first at listen time, so `consumer check` catches it and a start
		// stops as for any other key (exit 2).
		_, port, err := net.SplitHostPort(c.HTTP.Listen)
		if err == nil {
			_, err = net.LookupPort("tcp", port)
		}
		if err != nil {
			return keyErr("http.listen", "%q is not host:port", c.HTTP.Listen)
		}
	}
	if c.Callbacks.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Callbacks.Listen); err != nil {
			return keyErr("callbacks.listen", "%q is not host:port", c.Callbacks.Listen)
		}
		if c.Callbacks.Listen == c.HTTP.Listen {
			return keyErr("callbacks.listen", "must differ from http.listen: the probes and metrics stay off the internet-facing port")
		}
	}
	if c.Callbacks.MaxConcurrent < 1 || c.Callbacks.MaxConcurrent > 100000 {
		return keyErr("callbacks.max_concurrent", "must be 1 to 100000, got %d", c.Callbacks.MaxConcurrent)
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
		data, err := readFile(f.key, f.path)
		if err != nil {
			return err
		}
		if f.key == "nats.creds" {
			if err := checkCreds(f.key, f.path, data); err != nil {
				return err
			}
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

// checkCreds parses a .creds file as the connection will, so a damaged one stops start-up and
// `consumer check` with one line instead of failing every connect attempt for ever: it must
// hold a user JWT and a user nkey seed.
func checkCreds(key, path string, data []byte) error {
	tok, err := jwt.ParseDecoratedJWT(data)
	if err == nil {
		_, err = jwt.DecodeUserClaims(tok)
	}
	if err != nil {
		return keyErr(key, "%s holds no user JWT: %s", path, strings.Join(strings.Fields(err.Error()), " "))
	}
	if _, err := jwt.ParseDecoratedUserNKey(data); err != nil {
		return keyErr(key, "%s holds no user nkey seed: %s", path, strings.Join(strings.Fields(err.Error()), " "))
	}
	return nil
}

// CheckCredsFile reads and parses the .creds file at path, as an error naming nats.creds.
func CheckCredsFile(path string) error {
	data, err := readFile("nats.creds", path)
	if err != nil {
		return err
	}
	return checkCreds("nats.creds", path, data)
}

// readFile reads the file a key names, as an error naming the key if it cannot.
// maxKeyFile bounds what is read of a credentials, key or certificate file (a few KB each): a
// key pointing at a large file by mistake fails at once instead of filling memory.
const maxKeyFile = 1 << 20

func readFile(key, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		var data []byte
		data, err = io.ReadAll(io.LimitReader(f, maxKeyFile+1))
		if err == nil && len(data) > maxKeyFile {
			return nil, keyErr(key, "%s is larger than %d bytes: not a key, certificate or credentials file", path, maxKeyFile)
		}
		if err == nil {
			return data, nil
		}
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return nil, keyErr(key, "cannot read %s: %v", path, err)
}
