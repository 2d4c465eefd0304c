// Package natsinfra is the service's side of NATS: the connection with its authentication and
// TLS, and the JetStream assets of CONTRACT.md section 1, provisioned or bound to.
package natsinfra

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/paystatus/orderstatus/internal/config"
)

// Connect opens the NATS connection the service runs on, authenticated and encrypted as the
// nats keys say. NATS unreachable at start is waited for (the replica is not ready meanwhile),
// and a NATS restart later pauses the service, it does not stop it. A server that answers but
// refuses the credentials or the TLS handshake is a configuration mistake: Connect returns it
// at once, as one line naming the keys to check, instead of waiting for ever.
func Connect(cfg *config.Config, log *slog.Logger) (*nats.Conn, error) {
	url := config.RedactURL(cfg.NATS.URL)
	auth, err := AuthOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts := append([]nats.Option{
		nats.Name("order-status-consumer"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// Credentials the server refuses after a reconnect (rotated, revoked) are tried again
		// rather than closing the connection for good; the log says what is refused.
		nats.IgnoreAuthErrorAbort(),
		nats.ConnectHandler(func(nc *nats.Conn) { log.Info("NATS connected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if refused(err) {
				log.Error("NATS refuses this replica; trying again", "url", url, "err", err, "check", authKeys(cfg))
				return
			}
			log.Warn("NATS unreachable; trying again", "url", url, "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed the connection ourselves
				log.Warn("NATS disconnected; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted()) }),
		// Errors the server reports asynchronously (a permission missing, credentials refused
		// on a reconnect, a slow consumer) go to the log, not to nats.go's default, stderr.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if refused(err) {
				log.Error("NATS refuses this replica; trying again", "url", url, "err", err, "check", authKeys(cfg))
				return
			}
			if sub != nil {
				log.Warn("NATS error", "err", err, "subject", sub.Subject)
				return
			}
			log.Warn("NATS error", "err", err)
		}),
	}, auth...)
	// One attempt first, so that a refusal is returned rather than retried for ever; a server
	// not reachable yet is then waited for.
	nc, err := nats.Connect(cfg.NATS.URL, opts...)
	if err == nil {
		return nc, nil
	}
	if refused(err) {
		return nil, fmt.Errorf("connect to NATS at %s: %v (check %s)", url, err, authKeys(cfg))
	}
	nc, err = nats.Connect(cfg.NATS.URL, append(opts, nats.RetryOnFailedConnect(true))...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// AuthOptions are the nats.go options for the configured authentication and TLS, as the nats
// CLI's --creds, --nkey, --user/--password, --token, --tlsca, --tlscert and --tlskey.
func AuthOptions(cfg *config.Config) ([]nats.Option, error) {
	n := cfg.NATS
	var opts []nats.Option
	switch {
	case n.Creds != "":
		// Parsed here as well as in validation: a damaged file is one line naming the key, never
		// a connect that fails for ever.
		if err := config.CheckCredsFile(n.Creds); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(n.Creds))
	case n.NkeyFile != "":
		o, err := nats.NkeyOptionFromSeed(n.NkeyFile)
		if err != nil {
			return nil, &config.Error{Key: "nats.nkey_file", Msg: fmt.Sprintf("%s holds no nkey seed: %v", n.NkeyFile, err)}
		}
		opts = append(opts, o)
	case n.User != "":
		opts = append(opts, nats.UserInfo(n.User, n.Password.Reveal()))
	case n.Token != "":
		opts = append(opts, nats.Token(n.Token.Reveal()))
	}
	if n.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(n.TLS.CAFile))
	}
	if n.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(n.TLS.CertFile, n.TLS.KeyFile))
	}
	if n.TLS.Enabled() {
		opts = append(opts, nats.Secure())
	}
	return opts, nil
}

// Dial makes one connection attempt, for a tool that runs once (dlq replay) rather than a
// service that waits: a server that does not answer is "NATS unreachable at <url>", one that
// refuses the credentials or TLS says so. The URL in the error is redacted.
func Dial(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name(name), nats.Timeout(5 * time.Second)}, opts...)...)
	if err == nil {
		return nc, nil
	}
	if refused(err) {
		return nil, fmt.Errorf("NATS at %s refuses the connection: %v", config.RedactURL(url), err)
	}
	return nil, fmt.Errorf("NATS unreachable at %s: %v", config.RedactURL(url), err)
}

// refused reports whether err is the server answering no (credentials or TLS), as opposed to
// not answering at all.
func refused(err error) bool {
	for _, e := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked,
		nats.ErrAccountAuthExpired, nats.ErrSecureConnRequired, nats.ErrSecureConnWanted, nats.ErrNkeysNotSupported} {
		if errors.Is(err, e) {
			return true
		}
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var header tls.RecordHeaderError
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &header) {
		return true
	}
	// A client certificate the server refuses comes back as a TLS alert, which has no type.
	return strings.Contains(err.Error(), "tls: ")
}

// authKeys names the configuration keys a refusal is about.
func authKeys(cfg *config.Config) string {
	n := cfg.NATS
	keys := "nats.url"
	switch {
	case n.Creds != "":
		keys += ", nats.creds"
	case n.NkeyFile != "":
		keys += ", nats.nkey_file"
	case n.User != "":
		keys += ", nats.user, nats.password"
	case n.Token != "":
		keys += ", nats.token"
	}
	if n.TLS.Enabled() {
		keys += ", nats.tls"
	}
	return keys
}
