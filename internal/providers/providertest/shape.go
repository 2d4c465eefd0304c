package providertest

import (
	"fmt"
	"maps"
	"slices"
	"testing"
)

// SameShape fails t where a sandbox's answer (decoded into any by encoding/json) differs in
// shape from the document's example of it: a key the example has that the answer lacks
// (unless named in mayLack), a key the answer has that neither the example nor the document's
// field tables (tableOnly) name, or a value of another JSON type. Objects are compared all the
// way down. what names the answer in failures.
func SameShape(t *testing.T, what string, example, answer map[string]any, mayLack, tableOnly []string) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(example)) {
		got, ok := answer[k]
		switch {
		case !ok && !slices.Contains(mayLack, k):
			t.Errorf("%s: no %s, which the document's example has", what, k)
		case ok && jsonType(got) != jsonType(example[k]):
			t.Errorf("%s: %s is a %s, the document's example a %s", what, k, jsonType(got), jsonType(example[k]))
		case ok && jsonType(got) == "object":
			SameShape(t, what+"."+k, example[k].(map[string]any), got.(map[string]any), mayLack, tableOnly)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(answer)) {
		if _, ok := example[k]; !ok && !slices.Contains(tableOnly, k) {
			t.Errorf("%s: %s is not a documented field", what, k)
		}
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
