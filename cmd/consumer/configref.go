package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/paystatus/orderstatus/internal/config"
)

// runConfigReference writes every configuration key with its type, default and description,
// as a Markdown table, from the keys' one declaration.
func runConfigReference(w io.Writer) error {
	fmt.Fprintln(w, "| key | type | default | meaning |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, f := range config.Reference() {
		def := f.Default
		if def != "" {
			def = "`" + def + "`"
		}
		fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", f.Key, f.Type, def, strings.ReplaceAll(f.Doc, "|", `\|`))
	}
	return nil
}
