package handlers_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/paystatus/orderstatus/internal/app"
	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/registry"
)

// runSecureServer starts a JetStream server that mutate configures for one way of
// authentication; it is shut down when the test ends.
func runSecureServer(t *testing.T, mutate func(*server.Options)) *server.Server {
	t.Helper()
	opts := natsserver.DefaultTestOptions
	opts.Port = -1
	opts.JetStream = true
	opts.StoreDir = t.TempDir()
	mutate(&opts)
	s := natsserver.RunServer(&opts)
	t.Cleanup(s.Shutdown)
	return s
}

// secureConfig is the consumer's configuration against url with the Kuaishou sandbox; auth sets
// its nats keys.
func secureConfig(t *testing.T, url string, auth func(*config.NATS)) *config.Config {
	t.Helper()
	sb := kssandbox.New(0)
	kssandbox.LoadDemo(sb)
	if err := sb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	cfg := config.Default()
	cfg.NATS.URL = url
	cfg.Consumer.AckWait = 5 * time.Second
	cfg.Consumer.Concurrency = 4
	cfg.Providers = map[string]config.Provider{
		kuaishou.Name: {BaseURL: sb.URL(), QPS: 1000, Timeout: 2 * time.Second, Apps: kssandbox.DemoApps()},
	}
	if auth != nil {
		auth(&cfg.NATS)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// consumeOne connects as cfg says (natsinfra.Connect), provisions or binds (NewReplica), runs
// the replica, and checks that one payment request gives its event.
func consumeOne(t *testing.T, cfg *config.Config) *app.Replica {
	t.Helper()
	log := testLogger()
	nc, err := natsinfra.Connect(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	provs, err := registry.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r, err := app.NewReplica(ctx, cfg, nc, provs, log, app.Options{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	sub, err := nc.SubscribeSync("orders.status.>")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.Publish(ctx, "orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`)); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no event: %v", err)
	}
	ev, err := events.DecodeEvent(m.Header.Get("Content-Type"), m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if ev.OrderNo != demoOrder || ev.Status != events.StatusPending {
		t.Fatalf("event %+v", ev)
	}
	return r
}

// refusedClearly checks that Connect with cfg fails at once with one line that says why and
// names the keys to check, and that secret never shows.
func refusedClearly(t *testing.T, cfg *config.Config, why, keys, secret string) {
	t.Helper()
	var logs syncBuffer
	nc, err := natsinfra.Connect(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err == nil {
		// Under mutual TLS the refusal may come as a bare connection reset, which looks like a
		// server not there yet: the replica then waits, and logs the refusal once it reads it.
		defer nc.Close()
		natstest.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
			if nc.Status() == nats.CONNECTED {
				t.Fatal("connected with wrong credentials")
			}
			l := logs.String()
			if strings.Contains(l, "NATS refuses this replica") && strings.Contains(l, why) {
				return nil
			}
			// A server that drops a client without a certificate may do it before the client
			// reads why: every try then ends in a TLS error, which is still a refusal.
			if why == "tls: " && strings.Contains(l, "tls error") {
				return nil
			}
			return fmt.Errorf("no refusal logged:\n%s", l)
		})
		if nc.Status() == nats.CONNECTED {
			t.Fatal("connected with wrong credentials")
		}
		if secret != "" && strings.Contains(logs.String(), secret) {
			t.Fatalf("secret in the log:\n%s", logs.String())
		}
		return
	}
	msg := err.Error()
	if !strings.Contains(msg, why) || !strings.Contains(msg, "(check "+keys+")") || strings.Contains(msg, "\n") {
		t.Fatalf("error %q: want one line with %q and (check %s)", msg, why, keys)
	}
	if secret != "" && strings.Contains(msg, secret) {
		t.Fatalf("secret in %q", msg)
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUserAndPassword(t *testing.T) {
	s := runSecureServer(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "orders", Password: "pw-right-4711"}}
	})
	consumeOne(t, secureConfig(t, s.ClientURL(), func(n *config.NATS) { n.User, n.Password = "orders", "pw-right-4711" }))
	wrong := secureConfig(t, s.ClientURL(), func(n *config.NATS) { n.User, n.Password = "orders", "pw-wrong-0815" })
	refusedClearly(t, wrong, "Authorization Violation", "nats.url, nats.user, nats.password", "pw-wrong-0815")
	// Credentials in the URL work too, and never reach the error.
	inURL := secureConfig(t, strings.Replace(s.ClientURL(), "nats://", "nats://orders:pw-url-0815@", 1), nil)
	refusedClearly(t, inURL, "Authorization Violation", "nats.url", "pw-url-0815")
}

func TestToken(t *testing.T) {
	s := runSecureServer(t, func(o *server.Options) { o.Authorization = "tok-right-4711" })
	consumeOne(t, secureConfig(t, s.ClientURL(), func(n *config.NATS) { n.Token = "tok-right-4711" }))
	wrong := secureConfig(t, s.ClientURL(), func(n *config.NATS) { n.Token = "tok-wrong-0815" })
	refusedClearly(t, wrong, "Authorization Violation", "nats.url, nats.token", "tok-wrong-0815")
}

func TestNkey(t *testing.T) {
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	s := runSecureServer(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
	consumeOne(t, secureConfig(t, s.ClientURL(), func(n *config.NATS) { n.NkeyFile = writeFile(t, "user.nk", seed) }))

	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	wrong := secureConfig(t, s.ClientURL(), func(n *config.NATS) { n.NkeyFile = writeFile(t, "other.nk", otherSeed) })
	refusedClearly(t, wrong, "Authorization Violation", "nats.url, nats.nkey_file", string(otherSeed))

	notSeed := secureConfig(t, s.ClientURL(), func(n *config.NATS) { n.NkeyFile = writeFile(t, "pub.nk", []byte(pub)) })
	if _, err := natsinfra.Connect(notSeed, testLogger()); err == nil || !strings.HasPrefix(err.Error(), "config: nats.nkey_file: ") {
		t.Fatalf("a public key as seed: %v", err)
	}
}

// A .creds file as nsc makes it: an operator, an account with JetStream signed by it, and a
// user signed by the account; the server trusts the operator and resolves the account from memory.
func TestCredsFile(t *testing.T) {
	operator, _ := nkeys.CreateOperator()
	opub, _ := operator.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	if _, err := oc.Encode(operator); err != nil {
		t.Fatal(err)
	}
	account, _ := nkeys.CreateAccount()
	apub, _ := account.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	ajwt, err := ac.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	system, _ := nkeys.CreateAccount() // JetStream in operator mode wants a system account
	spub, _ := system.PublicKey()
	sjwt, err := jwt.NewAccountClaims(spub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	for pub, j := range map[string]string{apub: ajwt, spub: sjwt} {
		if err := resolver.Store(pub, j); err != nil {
			t.Fatal(err)
		}
	}
	creds := func(signer nkeys.KeyPair) []byte {
		user, _ := nkeys.CreateUser()
		upub, _ := user.PublicKey()
		useed, _ := user.Seed()
		ujwt, err := jwt.NewUserClaims(upub).Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		data, err := jwt.FormatUserConfig(ujwt, useed)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	s := runSecureServer(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{oc}
		o.AccountResolver = resolver
		o.SystemAccount = spub
	})
	consumeOne(t, secureConfig(t, s.ClientURL(), func(n *config.NATS) { n.Creds = writeFile(t, "orders.creds", creds(account)) }))

	stranger, _ := nkeys.CreateAccount() // an account the operator never signed
	wrong := secureConfig(t, s.ClientURL(), func(n *config.NATS) { n.Creds = writeFile(t, "stranger.creds", creds(stranger)) })
	refusedClearly(t, wrong, "Authorization Violation", "nats.url, nats.creds", "")
}

// pki is a CA the test makes, and certificates it signs, as PEM files.
type pki struct {
	t    *testing.T
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newCA(t *testing.T, name string) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &pki{t: t, cert: cert, key: key,
		file: writeFile(t, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// issue signs a certificate for name (a server on 127.0.0.1, or a client) and returns its
// certificate and key files.
func (ca *pki) issue(name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t := ca.t
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return writeFile(t, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		writeFile(t, name+"-key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

func tlsServer(t *testing.T, ca *pki, verifyClients bool) *server.Server {
	t.Helper()
	cert, key := ca.issue("nats-server", x509.ExtKeyUsageServerAuth)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cert, KeyFile: key, CaFile: ca.file, Verify: verifyClients, Timeout: 2})
	if err != nil {
		t.Fatal(err)
	}
	return runSecureServer(t, func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, verifyClients, tc, 2
	})
}

func TestTLS(t *testing.T) {
	ca := newCA(t, "orders-ca")
	s := tlsServer(t, ca, false)
	consumeOne(t, secureConfig(t, s.ClientURL(), func(n *config.NATS) { n.TLS.CAFile = ca.file }))

	other := newCA(t, "other-ca") // did not sign the server's certificate
	wrong := secureConfig(t, s.ClientURL(), func(n *config.NATS) { n.TLS.CAFile = other.file })
	refusedClearly(t, wrong, "x509: certificate signed by unknown authority", "nats.url, nats.tls", "")
	plain := secureConfig(t, s.ClientURL(), nil) // no CA: the system's do not know this one
	refusedClearly(t, plain, "x509: certificate signed by unknown authority", "nats.url", "")
}

func TestMutualTLS(t *testing.T) {
	ca := newCA(t, "orders-ca")
	s := tlsServer(t, ca, true)
	cert, key := ca.issue("orders-consumer", x509.ExtKeyUsageClientAuth)
	consumeOne(t, secureConfig(t, s.ClientURL(), func(n *config.NATS) {
		n.TLS.CAFile, n.TLS.CertFile, n.TLS.KeyFile = ca.file, cert, key
	}))

	noCert := secureConfig(t, s.ClientURL(), func(n *config.NATS) { n.TLS.CAFile = ca.file })
	refusedClearly(t, noCert, "tls: ", "nats.url, nats.tls", "")
	other := newCA(t, "other-ca")
	ocert, okey := other.issue("stranger", x509.ExtKeyUsageClientAuth)
	stranger := secureConfig(t, s.ClientURL(), func(n *config.NATS) {
		n.TLS.CAFile, n.TLS.CertFile, n.TLS.KeyFile = ca.file, ocert, okey
	})
	refusedClearly(t, stranger, "tls: ", "nats.url, nats.tls", "")
}
