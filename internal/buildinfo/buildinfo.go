// Package buildinfo says which build of the consumer is running: the version and VCS revision
// the Go toolchain stamped into the binary, or the ones a release build set with
//
//	go build -ldflags "-X github.com/paystatus/orderstatus/internal/buildinfo.version=1.4.0 \
//	  -X github.com/paystatus/orderstatus/internal/buildinfo.revision=$(git rev-parse HEAD)"
package buildinfo

import (
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"
)

// Set by -ldflags "-X ..." on release builds; empty means: ask the binary's build information.
var (
	version  string
	revision string
)

// Info is what a build says about itself.
type Info struct {
	Version  string // the module version ("v1.4.0", "v0.0.0-2024…-abcdef+dirty"), or "(devel)"
	Revision string // VCS revision, "" when unknown
	Modified bool   // built from a working tree with uncommitted changes
}

// Read returns the running binary's build information; -ldflags values take precedence.
func Read() Info {
	return read(debug.ReadBuildInfo)
}

func read(readBuild func() (*debug.BuildInfo, bool)) Info {
	info := Info{Version: "(devel)"}
	if bi, ok := readBuild(); ok {
		if v := bi.Main.Version; v != "" {
			info.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		info.Version = version
	}
	if revision != "" {
		info.Revision = revision
		info.Modified = strings.HasSuffix(version, "-dirty")
	}
	return info
}

// String is the one line `consumer version` prints.
func (i Info) String() string {
	rev := i.Revision
	if rev == "" {
		rev = "unknown"
	}
	if i.Modified {
		rev += " (modified)"
	}
	return fmt.Sprintf("consumer %s, revision %s", i.Version, rev)
}

// semverRe is the regular expression semver.org gives for a version (without a leading v).
var semverRe = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// Semver is the version as semver 2.0, as the NATS micro service needs it: the module version
// without its "v" when it is one, else 0.0.0-dev with the short revision as build metadata.
func (i Info) Semver() string {
	if v := strings.TrimPrefix(i.Version, "v"); semverRe.MatchString(v) {
		return v
	}
	meta := ""
	if rev := i.Revision; rev != "" && regexp.MustCompile(`^[0-9a-zA-Z]+$`).MatchString(rev) {
		meta = "+" + rev[:min(len(rev), 12)]
		if i.Modified {
			meta += ".dirty"
		}
	}
	return "0.0.0-dev" + meta
}
