package providertest

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/paystatus/orderstatus/internal/providers"
)

var update = flag.Bool("update", false, "write the golden files of the parse tests instead of comparing with them")

// Case is one answer a provider's parser is given, and how it is given: Parse runs the parser.
type Case struct {
	Name  string
	Parse func() (providers.Result, error)
}

// Golden fails t for every case whose outcome, as Describe writes it, differs from the one
// stored under its name in file; with -update it writes the file instead. The file holds the
// whole outcome (every field of the result, the details with the Go type of every value, or
// the error's class, code and text), so that a change of any of it shows.
func Golden(t *testing.T, file string, cases []Case) {
	t.Helper()
	got := make(map[string]string, len(cases))
	for _, c := range cases {
		if _, dup := got[c.Name]; dup {
			t.Fatalf("two cases named %q", c.Name)
		}
		if !utf8.ValidString(c.Name) || strings.ContainsAny(c.Name, "\n\r\x00") || len(c.Name) > 200 {
			t.Fatalf("case %.50q: a case's name is one short line of text", c.Name)
		}
		got[c.Name] = Describe(c.Parse())
	}
	if *update {
		var b strings.Builder
		for _, name := range slices.Sorted(maps.Keys(got)) {
			fmt.Fprintf(&b, "== %s\n%s\n", name, got[name])
		}
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	want := map[string]string{}
	for block := range strings.SplitSeq(strings.TrimPrefix(string(raw), "== "), "\n== ") {
		name, text, _ := strings.Cut(block, "\n")
		want[name] = strings.TrimSuffix(text, "\n")
	}
	for _, c := range cases {
		w, ok := want[c.Name]
		switch {
		case !ok:
			t.Errorf("%s: not in %s", c.Name, file)
		case w != got[c.Name]:
			t.Errorf("%s:\n got: %s\nwant: %s", c.Name, got[c.Name], w)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if _, ok := got[name]; !ok {
			t.Errorf("%s: in %s, but no such case", name, file)
		}
	}
}

// Describe writes a parser's outcome in full, on one line.
func Describe(res providers.Result, err error) string {
	if err != nil {
		var pe *providers.Error
		if !errors.As(err, &pe) {
			return "unclassified error: " + strconv.Quote(err.Error())
		}
		return fmt.Sprintf("error %s code=%q: %q", pe.Class, pe.Code, err.Error())
	}
	return fmt.Sprintf("status=%s provider_status=%q amount=%d order_key=%q order_no=%q provider_order_no=%q provider_ref_no=%q channel=%s paid_at=%s observed_at=%s details=%s",
		res.Status, res.ProviderStatus, res.Amount, res.OrderKey, res.OrderNo, res.ProviderOrderNo, res.ProviderRefNo,
		res.Channel, describeTime(res.PaidAt), describeTime(res.ObservedAt), describeValue(res.Details))
}

func describeTime(t time.Time) string {
	if t.IsZero() {
		return "zero(" + t.Location().String() + ")"
	}
	return t.Format(time.RFC3339Nano) + "(" + t.Location().String() + ")"
}

// describeValue writes a details value with the Go type of every number, so that an int64
// that became a float64 (or a json.Number that was left) shows.
func describeValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "nil"
	case bool:
		return strconv.FormatBool(v)
	case string:
		return strconv.Quote(v)
	case int64:
		return "int64(" + strconv.FormatInt(v, 10) + ")"
	case float64:
		return "float64(" + strconv.FormatFloat(v, 'g', -1, 64) + ")"
	case map[string]any:
		if v == nil {
			return "map(nil)"
		}
		parts := make([]string, 0, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			parts = append(parts, strconv.Quote(k)+": "+describeValue(v[k]))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			parts = append(parts, describeValue(e))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprintf("%T(%#v)", v, v)
}

// CheckDetails fails t unless details is an object (never nil) holding only what decoded JSON
// holds, with numbers as int64 or float64: a json.Number, or any other Go type, is a value the
// parser forgot to finish.
func CheckDetails(t *testing.T, details map[string]any) {
	t.Helper()
	if details == nil {
		t.Fatal("details are nil")
	}
	var check func(path string, v any)
	check = func(path string, v any) {
		switch v := v.(type) {
		case nil, bool, string, int64, float64:
		case map[string]any:
			for k, e := range v {
				check(path+"."+k, e)
			}
		case []any:
			for i, e := range v {
				check(path+"["+strconv.Itoa(i)+"]", e)
			}
		default:
			t.Fatalf("details%s is a %T: %#v", path, v, v)
		}
	}
	check("", details)
}
