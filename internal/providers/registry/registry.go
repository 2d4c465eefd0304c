// Package registry knows every provider package and builds the configured ones. Adding a
// provider is one folder under internal/providers and one line in factories.
package registry

import (
	"fmt"
	"slices"
	"strings"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou"
	"github.com/paystatus/orderstatus/internal/providers/kudian"
)

// Factory builds a provider from its configuration.
type Factory func(cfg config.Provider, all *config.Config) (providers.Provider, error)

var factories = map[string]Factory{
	kuaishou.Name: func(cfg config.Provider, _ *config.Config) (providers.Provider, error) { return kuaishou.New(cfg) },
	kudian.Name: func(cfg config.Provider, all *config.Config) (providers.Provider, error) {
		return kudian.New(cfg, kudian.WithPII(all.Events.IncludePII))
	},
}

// Names lists the known providers.
func Names() []string {
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Build returns the configured providers. A provider name no package knows is a
// configuration error naming the key.
func Build(cfg *config.Config) ([]providers.Provider, error) {
	var out []providers.Provider
	names := make([]string, 0, len(cfg.Providers))
	for n := range cfg.Providers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		f, ok := factories[name]
		if !ok {
			return nil, &config.Error{Key: "providers." + name, Msg: fmt.Sprintf("unknown provider (known: %s)", strings.Join(Names(), ", "))}
		}
		pc := cfg.Providers[name]
		p, err := f(pc, cfg)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Supports reports whether a provider package answers queries of kind, configured or not.
func Supports(provider, kind string) bool {
	f, ok := factories[provider]
	if !ok {
		return false
	}
	p, err := f(config.Provider{}, config.Default())
	return err == nil && p.SupportsKind(kind)
}
