package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestSemver(t *testing.T) {
	for _, tc := range []struct {
		info Info
		want string
	}{
		{Info{Version: "v1.4.0"}, "1.4.0"},
		{Info{Version: "v0.0.0-20240102030405-abcdef123456+dirty"}, "0.0.0-20240102030405-abcdef123456+dirty"},
		{Info{Version: "(devel)", Revision: "abcdef1234567890", Modified: true}, "0.0.0-dev+abcdef123456.dirty"},
		{Info{Version: "(devel)"}, "0.0.0-dev"},
		{Info{Version: "v1.2", Revision: "zz/bad"}, "0.0.0-dev"},
		{Info{Version: "1.2.3-rc.1"}, "1.2.3-rc.1"},
	} {
		if got := tc.info.Semver(); got != tc.want {
			t.Errorf("%+v: Semver() = %q, want %q", tc.info, got, tc.want)
		}
	}
}

func TestReadPrefersLdflags(t *testing.T) {
	bi := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.modified", Value: "true"}}}, true
	}
	if got := read(bi); got != (Info{Version: "(devel)", Revision: "0123456789abcdef", Modified: true}) {
		t.Fatalf("from build info: %+v", got)
	}
	version, revision = "1.4.0", "feedface"
	defer func() { version, revision = "", "" }()
	if got := read(bi); got != (Info{Version: "1.4.0", Revision: "feedface"}) {
		t.Fatalf("with -ldflags: %+v", got)
	}
}
