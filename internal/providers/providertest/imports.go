package providertest

import (
	"go/build"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// NoImport fails t when the package in the current directory (a provider's sandbox), its
// tests, or anything it imports from this module imports pkg (the provider's client). A
// sandbox states the wire rules again from the documents: a rule it took from the client would
// be wrong on both sides at once, and no test could catch it.
func NoImport(t *testing.T, pkg string) {
	t.Helper()
	root, module := moduleRoot(t)
	self, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var walk func(from string, imports []string)
	walk = func(from string, imports []string) {
		for _, imp := range imports {
			if imp == pkg {
				t.Errorf("%s imports %s", from, pkg)
			}
			rel, ok := strings.CutPrefix(imp, module+"/")
			if !ok || seen[imp] {
				continue
			}
			seen[imp] = true
			p, err := build.ImportDir(filepath.Join(root, filepath.FromSlash(rel)), 0)
			if err != nil {
				t.Fatalf("%s: %v", imp, err)
			}
			walk(imp, p.Imports)
		}
	}
	walk("the sandbox", slices.Concat(self.Imports, self.TestImports, self.XTestImports))
}

// moduleRoot finds the directory holding go.mod above the current one, and the module's path.
func moduleRoot(t *testing.T) (dir, module string) {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			for line := range strings.Lines(string(b)) {
				if m, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
					return dir, strings.TrimSpace(m)
				}
			}
			t.Fatalf("%s/go.mod names no module", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
