package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
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
	} {
		code, stdout, stderr := runCmd(tc.args...)
		text := stderr
		if tc.toStdout {
			text = stdout
		}
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d", tc.args, code, tc.code)
		}
		for _, sub := range []string{"consumer [run] --config FILE", "consumer dev", "consumer check", "consumer dlq replay", "consumer decode", "consumer config", "consumer version", "consumer completion"} {
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

	// --json: what a script reads, on stdout; an error is in it too, with the same exit code.
	code, stdout, stderr = runCmd("check", "--config", good, "--json")
	var ok struct {
		OK        bool   `json:"ok"`
		Providers int    `json:"providers"`
		Apps      int    `json:"apps"`
		NATS      string `json:"nats"`
		Key       string `json:"key"`
		Error     string `json:"error"`
	}
	if err := json.Unmarshal([]byte(stdout), &ok); err != nil || code != 0 || stderr != "" ||
		!ok.OK || ok.Providers != 1 || ok.Apps != 1 {
		t.Errorf("check --json: exit %d, %v, stdout %q, stderr %q", code, err, stdout, stderr)
	}
	if strings.Contains(ok.NATS, "pw") || ok.NATS == "" {
		t.Errorf("check --json nats %q", ok.NATS)
	}
	code, stdout, stderr = runCmd("check", "--config", write("bad.yaml", "nats:\n  replicas: 9\n"), "--json")
	ok.OK, ok.Key, ok.Error = true, "", ""
	if err := json.Unmarshal([]byte(stdout), &ok); err != nil || code != 2 || stderr != "" || ok.OK || ok.Key != "nats.replicas" ||
		ok.Error != "config: nats.replicas: must be 1 to 5, got 9" {
		t.Errorf("check --json, bad config: exit %d, %v, %+v, stderr %q", code, err, ok, stderr)
	}
}

// Each command's help is its own, on stdout, exit 0; `help COMMAND` is the same text.
func TestCommandHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"help", "dlq"}, []string{"consumer dlq <command>", "dlq replay"}},
		{[]string{"dlq", "--help"}, []string{"consumer dlq <command>", "dlq replay"}},
		{[]string{"dlq", "replay", "--help"}, []string{"consumer dlq replay", "--server", "--creds", "--context", "--dry-run", "--json", "--reason"}},
		{[]string{"help", "dlq", "replay"}, []string{"consumer dlq replay", "--server"}},
		{[]string{"decode", "--help"}, []string{"consumer decode", "stdin"}},
		{[]string{"config", "-h"}, []string{"consumer config", "configuration key"}},
		{[]string{"check", "--help"}, []string{"consumer check", "--config", "--json"}},
		{[]string{"run", "--help"}, []string{"consumer run", "--config", "--log-format", "--cpu-profile"}},
		{[]string{"dev", "--help"}, []string{"consumer dev", "--dir", "--nats-port", "--nats-url", "--replicas", "--http", "--encoding", "--reset", "--log-format",
			"--callbacks", "--notify-duplicate-rate", "--notify-reorder-rate"}},
		{[]string{"version", "--help"}, []string{"consumer version", "--json"}},
		{[]string{"completion", "--help"}, []string{"consumer completion", "bash"}},
	} {
		code, stdout, stderr := runCmd(tc.args...)
		if code != 0 || stderr != "" {
			t.Errorf("%q: exit %d, stderr %q", tc.args, code, stderr)
		}
		if strings.Contains(stdout, "consumer [run] --config FILE") {
			t.Errorf("%q: the top-level usage, not the command's help:\n%s", tc.args, stdout)
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%q: help lacks %q:\n%s", tc.args, w, stdout)
			}
		}
	}
	if a, b := func() string { _, o, _ := runCmd("help", "dlq", "replay"); return o }(), func() string { _, o, _ := runCmd("dlq", "replay", "--help"); return o }(); a != b {
		t.Errorf("help dlq replay and dlq replay --help differ:\n%s\n%s", a, b)
	}
}

// A mistake on the command line is one line on stderr, nothing on stdout, and exit 2.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"version", "--bogus"}, "unknown flag --bogus"},
		{[]string{"check", "--bogus"}, "unknown flag --bogus"},
		{[]string{"check", "--config", "x.yaml", "--bogus"}, "unknown flag --bogus"},
		{[]string{"check"}, "--config"},
		{[]string{"run"}, "--config"},
		{[]string{"--log-format", "json"}, "--config"},
		{[]string{"dlq"}, "expected"},
		{[]string{"dlq", "replay", "--since", "yesterday-ish"}, "neither an RFC 3339 time nor a duration"},
		{[]string{"dlq", "replay", "--provider", "a.b"}, "not a subject token"},
		{[]string{"no-such-command"}, "no-such-command"},
		{[]string{"dev", "--encoding", "xml"}, "--encoding"},
		{[]string{"dev", "--notify-reorder-rate", "1.5"}, "--notify-reorder-rate: 1.5 is not between 0 and 1"},
		{[]string{"dev", "--notify-duplicate-rate=-0.1"}, "--notify-duplicate-rate: -0.1 is not between 0 and 1"},
		{[]string{"dev", "--notify-duplicate-rate", "often"}, "--notify-duplicate-rate"},
		{[]string{"completion", "tcsh"}, "tcsh"},
		{[]string{"help", "nope"}, "nope"},
	} {
		code, stdout, stderr := runCmd(tc.args...)
		if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "consumer: ") || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and one line with %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
}

func TestVersionJSON(t *testing.T) {
	code, stdout, stderr := runCmd("version", "--json")
	var v struct {
		Version  *string `json:"version"`
		Revision *string `json:"revision"`
		Modified *bool   `json:"modified"`
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil || code != 0 || stderr != "" || v.Version == nil || v.Revision == nil || v.Modified == nil {
		t.Fatalf("exit %d, %v, stdout %q, stderr %q", code, err, stdout, stderr)
	}
	if info := buildinfo.Read(); *v.Version != info.Version || *v.Revision != info.Revision {
		t.Fatalf("%+v, want %+v", v, info)
	}
}

// The completion scripts call the hidden __complete command, which answers from the same
// grammar that parses the command line.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		code, stdout, stderr := runCmd("completion", sh)
		if code != 0 || stderr != "" || !strings.Contains(stdout, "consumer __complete") {
			t.Errorf("completion %s: exit %d, stderr %q:\n%s", sh, code, stderr, stdout)
		}
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{""}, []string{"run", "dev", "check", "dlq", "decode", "config", "version", "completion", "help"}},
		{[]string{"d"}, []string{"dev", "dlq", "decode"}},
		{[]string{"dlq", ""}, []string{"replay"}},
		{[]string{"dlq", "replay", "--s"}, []string{"--server", "--since"}},
		{[]string{"dev", "--encoding", ""}, []string{"json", "msgpack"}},
		{[]string{"dev", "--reset", "--log-format", "j"}, []string{"json"}},
		{[]string{"completion", ""}, []string{"bash", "zsh", "fish"}},
		{[]string{"check", "--config=x", "--j"}, []string{"--json"}},
	} {
		code, stdout, _ := runCmd(append([]string{"__complete"}, tc.words...)...)
		got := strings.Fields(stdout)
		if code != 0 || !slices.Equal(got, tc.want) {
			t.Errorf("%q: exit %d, %q, want %q", tc.words, code, got, tc.want)
		}
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
