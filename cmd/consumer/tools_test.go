package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/buildinfo"
	"github.com/paystatus/orderstatus/internal/natstest"
)

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpListsSubcommands(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		toStdout bool
	}{
		{nil, 2, false}, // a bare command is a usage error, as with go and git
		{[]string{"--help"}, 0, true},
		{[]string{"-h"}, 0, true},
		{[]string{"help"}, 0, true},
		{[]string{"decode", "--help"}, 0, true},
		{[]string{"config", "-h"}, 0, true},
	} {
		code, stdout, stderr := runCmd(tc.args...)
		text := stderr
		if tc.toStdout {
			text = stdout
		}
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d", tc.args, code, tc.code)
		}
		for _, sub := range []string{"consumer [run] --config FILE", "consumer dev", "consumer check", "consumer dlq replay", "consumer decode", "consumer config", "consumer version"} {
			if !strings.Contains(text, sub) {
				t.Errorf("%q: help lacks %q:\n%s", tc.args, sub, text)
			}
		}
		if strings.Contains(stdout+stderr, "is required") {
			t.Errorf("%q: %s", tc.args, stdout+stderr)
		}
	}
}

func TestVersionOnEveryCommand(t *testing.T) {
	want := buildinfo.Read().String() + "\n"
	for _, args := range [][]string{
		{"version"}, {"--version"}, {"run", "--version"}, {"--config", "x.yaml", "--version"}, {"dev", "--version"},
		{"check", "--version"}, {"dlq", "replay", "--version"}, {"decode", "--version"}, {"config", "--version"},
	} {
		code, stdout, stderr := runCmd(args...)
		if code != 0 || stdout != want || stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0, %q", args, code, stdout, stderr, want)
		}
	}
	if !strings.HasPrefix(want, "consumer ") || !strings.Contains(want, ", revision ") {
		t.Fatalf("version line %q", want)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, yaml string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("CHECK_SECRET", "s3cret-value")
	good := write("good.yaml", "nats:\n  url: nats://user:pw@127.0.0.1:1\nproviders:\n  kuaishou:\n    base_url: http://127.0.0.1:1\n    apps:\n      - app_id: a1\n        app_secret: ${CHECK_SECRET}\n")
	code, stdout, stderr := runCmd("check", "--config", good)
	if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "ok: "+good) || strings.Count(stdout, "\n") != 1 ||
		strings.Contains(stdout, "pw@") || strings.Contains(stdout, "s3cret") {
		t.Fatalf("good config: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for name, tc := range map[string]struct{ yaml, want string }{
		"replicas": {"nats:\n  replicas: 9\n", "consumer: config: nats.replicas: must be 1 to 5, got 9\n"},
		"provider": {"providers:\n  paypal:\n    base_url: http://x\n", "consumer: config: providers.paypal: unknown provider (known: kuaishou, kudian)\n"},
		"env":      {"providers:\n  kuaishou:\n    base_url: http://x\n    apps:\n      - app_id: a\n        app_secret: ${NOT_SET_ANYWHERE}\n", "consumer: config: providers.kuaishou.apps[0].app_secret: environment variable NOT_SET_ANYWHERE is not set\n"},
	} {
		code, stdout, stderr := runCmd("check", "--config", write(name+".yaml", tc.yaml))
		if code != 2 || stdout != "" || stderr != tc.want {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2, %q", name, code, stdout, stderr, tc.want)
		}
	}
	if code, _, stderr := runCmd("check"); code != 2 || strings.Count(stderr, "\n") != 1 {
		t.Errorf("no --config: exit %d, %q", code, stderr)
	}
}

// corruptCreds writes a creds file whose seed fails its checksum, and one that is no creds file.
func corruptCreds(t *testing.T) (badChecksum, notCreds string) {
	t.Helper()
	good, err := os.ReadFile(natstest.WriteCreds(t))
	if err != nil {
		t.Fatal(err)
	}
	at := strings.Index(string(good), "\nSU") + 10
	if good[at] == 'A' {
		good[at] = 'B'
	} else {
		good[at] = 'A'
	}
	dir := t.TempDir()
	badChecksum, notCreds = filepath.Join(dir, "bad.creds"), filepath.Join(dir, "not.creds")
	if err := os.WriteFile(badChecksum, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notCreds, []byte("user: orders\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return badChecksum, notCreds
}

// A damaged creds file stops `consumer check` and the service's start with one line naming
// nats.creds, instead of a start that retries the connection for ever.
func TestCorruptCredsStopsCheckAndStart(t *testing.T) {
	bad, notCreds := corruptCreds(t)
	for name, creds := range map[string]string{"bad checksum": bad, "not a creds file": notCreds} {
		path := filepath.Join(t.TempDir(), "consumer.yaml")
		if err := os.WriteFile(path, []byte("nats:\n  url: nats://127.0.0.1:1\n  creds: "+creds+"\nhttp:\n  listen: \"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"check", "--config", path}, {"--config", path}, {"run", "--config", path}} {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			var stdout, stderr bytes.Buffer
			code := run(ctx, args, strings.NewReader(""), &stdout, &stderr)
			timedOut := ctx.Err() != nil
			cancel()
			if timedOut {
				t.Fatalf("%s %q: still running after 20 s (retrying the connection?)", name, args)
			}
			if code != 2 || stdout.Len() != 0 || strings.Count(stderr.String(), "\n") != 1 ||
				!strings.HasPrefix(stderr.String(), "consumer: config: nats.creds: "+creds+" holds no user") {
				t.Errorf("%s %q: exit %d, stdout %q, stderr %q; want 2 and one line naming nats.creds", name, args, code, stdout.String(), stderr.String())
			}
		}
	}
}
