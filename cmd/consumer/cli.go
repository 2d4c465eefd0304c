package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/paystatus/orderstatus/internal/buildinfo"
	"github.com/paystatus/orderstatus/internal/config"
)

// cli is the whole command line, declared once: kong derives the parsing, the help and the
// shell completion from it.
type cli struct {
	Version kong.VersionFlag `help:"Print the version and VCS revision, and exit."`

	Run        serviceCmd    `cmd:"" default:"withargs" help:"Run the service (the default command)."`
	Dev        devCmd        `cmd:"" help:"NATS, provider sandboxes and the service on this machine, with no set-up."`
	Check      checkCmd      `cmd:"" help:"Validate the configuration without connecting."`
	DLQ        dlqCmd        `cmd:"" name:"dlq" help:"Dead letters in ORDERS_DLQ."`
	Decode     decodeCmd     `cmd:"" help:"Write one message body (msgpack or JSON) read on stdin as JSON."`
	Config     configCmd     `cmd:"" help:"List every configuration key, its default and meaning."`
	VersionCmd versionCmd    `cmd:"" name:"version" help:"Print the version and VCS revision of this build."`
	Completion completionCmd `cmd:"" help:"Print a shell completion script (bash, zsh or fish)."`
	Help       helpCmd       `cmd:"" help:"Help on a command: consumer help dlq replay."`
}

// env is what every command runs with: passed in, so tests drive the whole command.
type env struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
}

const usage = `usage:
  consumer [run] --config FILE [--log-format auto|text|json] [--cpu-profile FILE]
                                run the service
  consumer dev [--dir DIR] [--nats-port N] [--nats-url URL] [--replicas N] [--http ADDR]
               [--callbacks ADDR] [--notify-duplicate-rate P] [--notify-reorder-rate P]
               [--encoding json|msgpack] [--reset] [--log-format ...]
                                NATS, provider sandboxes and the service on this machine
  consumer check --config FILE [--json]
                                validate the configuration without connecting
  consumer dlq replay [--config FILE] [--server URL] [--creds FILE] [--context NAME]
                      [--reason R,...] [--provider P] [--kind K] [--since T] [--until T]
                      [--dry-run] [--json]
                                republish dead letters to their query subjects
  consumer decode < message-body
                                one message body (msgpack or JSON) as JSON
  consumer config               every configuration key, its default and meaning
  consumer version [--json]     version and VCS revision of this build
  consumer completion bash|zsh|fish
                                a shell completion script
  consumer help [COMMAND...]    this text, or a command's help

Every command takes --version and --help.
`

// exitCode ends a parse from inside kong (help, --version) with a code instead of os.Exit.
type exitCode int

// silentError is a failure already reported (in JSON on stdout): only its exit code is left.
type silentError struct{ code int }

func (e silentError) Error() string { return fmt.Sprintf("exit %d", e.code) }

var errUsage = errors.New("usage")

func newParser(grammar *cli, e *env) (*kong.Kong, error) {
	return kong.New(grammar,
		kong.Name("consumer"),
		kong.Description("The order-status consumer: it answers query requests published on NATS JetStream by asking Kuaishou and Kudian, and publishes status-changed events."),
		kong.Writers(e.stdout, e.stderr),
		kong.Exit(func(code int) { panic(exitCode(code)) }),
		kong.Vars{"version": buildinfo.Read().String()},
		kong.Help(func(opts kong.HelpOptions, ctx *kong.Context) error {
			if ctx.Selected() == nil { // the top level: the overview, one line a command
				_, err := fmt.Fprint(ctx.Stdout, usage)
				return err
			}
			return kong.DefaultHelpPrinter(opts, ctx)
		}),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Bind(e),
	)
}

// run is the whole command, with its inputs and outputs passed in so tests can drive it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	if len(args) == 0 {
		// As go and git do: a bare command is a usage error, so the help goes to stderr.
		fmt.Fprint(stderr, usage)
		return 2
	}
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	var grammar cli
	parser, err := newParser(&grammar, e)
	if err != nil {
		fmt.Fprintf(stderr, "consumer: %v\n", err)
		return 1
	}
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			code = int(c)
		}
	}()
	if args[0] == completeCommand {
		complete(parser, args[1:], stdout)
		return 0
	}
	kctx, err := parser.Parse(joinNegative(args))
	if err != nil {
		fmt.Fprintf(stderr, "consumer: %v\n", err)
		return 2
	}
	if kctx.Selected() != nil && kctx.Selected().Name == "help" {
		if _, err := parser.Parse(append(grammar.Help.Command, "--help")); err != nil {
			fmt.Fprintf(stderr, "consumer: %v\n", err)
			return 2
		}
		return 0
	}
	return exitFor(kctx.Run(), stderr)
}

// joinNegative writes "--flag -1" as "--flag=-1": kong reads a word starting with "-" as a
// flag, and --nats-port takes -1 (any free port).
func joinNegative(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if strings.HasPrefix(a, "--") && !strings.Contains(a, "=") && i+1 < len(args) && negativeRe.MatchString(args[i+1]) {
			a += "=" + args[i+1]
			i++
		}
		out = append(out, a)
	}
	return out
}

var negativeRe = regexp.MustCompile(`^-[0-9]+$`)

// exitFor reports err on one line and says the exit code: 2 for a usage or configuration
// mistake, 1 for any other failure.
func exitFor(err error, stderr io.Writer) int {
	var ce *config.Error
	var se silentError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &se):
		return se.code
	case errors.As(err, &ce), errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "consumer: %v\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "consumer: %v\n", err)
	return 1
}

type helpCmd struct {
	Command []string `arg:"" optional:"" help:"The command, e.g. dlq replay."`
}

// Run is not reached: run reparses the command with --help.
func (helpCmd) Run() error { return nil }

type versionCmd struct {
	JSON bool `name:"json" help:"As a JSON object: version, revision, modified."`
}

func (c *versionCmd) Run(e *env) error {
	info := buildinfo.Read()
	if c.JSON {
		return writeJSON(e.stdout, map[string]any{"version": info.Version, "revision": info.Revision, "modified": info.Modified})
	}
	_, err := fmt.Fprintln(e.stdout, info)
	return err
}

type decodeCmd struct{}

func (decodeCmd) Run(e *env) error { return runDecode(e.stdin, e.stdout) }

type configCmd struct{}

func (configCmd) Run(e *env) error { return runConfigReference(e.stdout) }

type dlqCmd struct {
	Replay replayCmd `cmd:"" help:"Republish dead letters from ORDERS_DLQ to their query subjects, payload byte for byte with the request's own headers, and delete each once its replay is stored. Letters that cannot be replayed are skipped with their reason; the run goes on and exits 1 if any was."`
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
