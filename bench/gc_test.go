//go:build linux

package main

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// The bare proxies run with the GC settings of the tokenhandlers under load: their GOGC
// (tokenhandler's own default when they have none) and GOMEMLIMIT.
func TestGCEnv(t *testing.T) {
	for _, tc := range []struct {
		thEnv, want []string
	}{
		{nil, []string{"GOGC=" + tokenhandlerGOGC, "GOMEMLIMIT=" + tokenhandlerGOMEMLIMIT}},
		{[]string{"GOGC=200"}, []string{"GOGC=200"}},
		{[]string{"FOO=1", "GOMEMLIMIT=64MiB"}, []string{"GOGC=" + tokenhandlerGOGC, "GOMEMLIMIT=64MiB"}},
		{[]string{"GOMEMLIMIT=1GiB", "GOGC=off"}, []string{"GOGC=off", "GOMEMLIMIT=1GiB"}},
	} {
		if got := gcEnv(tc.thEnv); !slices.Equal(got, tc.want) {
			t.Errorf("gcEnv(%q) = %q, want %q", tc.thEnv, got, tc.want)
		}
	}
	o, err := parseFlags([]string{"-bare-env", "GOGC=100,X=1"})
	if err != nil {
		t.Fatal(err)
	}
	// -bare-env comes last: the process's environment keeps the last of duplicate keys.
	if want := []string{"GOGC=" + tokenhandlerGOGC, "GOMEMLIMIT=" + tokenhandlerGOMEMLIMIT, "GOGC=100", "X=1"}; !slices.Equal(o.bareEnv, want) {
		t.Errorf("bareEnv = %q, want %q", o.bareEnv, want)
	}
}

// tokenhandlerGOGC is the GOGC tokenhandler sets for itself: if that default changes, the
// harness's equal-settings comparison must change with it.
func TestTokenhandlerGOGC(t *testing.T) {
	src, err := os.ReadFile("../cmd/tokenhandler/main.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`gcPercent\s*=\s*(\d+)`).FindSubmatch(src)
	if m == nil {
		t.Fatal("cmd/tokenhandler/main.go: no const gcPercent")
	}
	if string(m[1]) != tokenhandlerGOGC {
		t.Errorf("tokenhandler's gcPercent = %s, bench's tokenhandlerGOGC = %s", m[1], tokenhandlerGOGC)
	}
	m = regexp.MustCompile(`softMemoryLimit\s*=\s*(\d+) << 20`).FindSubmatch(src)
	if m == nil {
		t.Fatal("cmd/tokenhandler/main.go: no const softMemoryLimit = N << 20")
	}
	if string(m[1])+"MiB" != tokenhandlerGOMEMLIMIT {
		t.Errorf("tokenhandler's softMemoryLimit = %s MiB, bench's tokenhandlerGOMEMLIMIT = %s", m[1], tokenhandlerGOMEMLIMIT)
	}
}

// Each setup runs once in each position over as many rounds as there are setups.
func TestRoundOrder(t *testing.T) {
	live := []target{{setup: "a"}, {setup: "b"}, {setup: "c"}}
	var got []string
	for round := 1; round <= 4; round++ {
		s := ""
		for _, x := range roundOrder(live, round) {
			s += x.setup
		}
		got = append(got, s)
	}
	if want := []string{"abc", "bca", "cab", "abc"}; !slices.Equal(got, want) {
		t.Errorf("orders = %q, want %q", got, want)
	}
	if live[0].setup != "a" {
		t.Error("roundOrder changed its argument")
	}
}
