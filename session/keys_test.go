package session_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/tokenhandler/tokenhandler/session"
)

func TestKeyPairRevealParses(t *testing.T) {
	k := newKey(t)
	got, err := session.ParseKeyPair(k.Reveal())
	if err != nil {
		t.Fatalf("ParseKeyPair(Reveal()) = %v", err)
	}
	if !bytes.Equal(got.Hash, k.Hash) || !bytes.Equal(got.Block, k.Block) {
		t.Errorf("ParseKeyPair(Reveal()) differs from the pair")
	}
	if k2 := newKey(t); bytes.Equal(k2.Hash, k.Hash) || bytes.Equal(k2.Block, k.Block) || bytes.Equal(k.Hash, k.Block) {
		t.Errorf("GenerateKeyPair() repeats key material")
	}
}

func TestParseKeyPair(t *testing.T) {
	hash := bytes.Repeat([]byte{0xfb}, 32) // base64 "+/" vs "-_" differ for 0xfb bytes
	block := bytes.Repeat([]byte{0x3e, 0xff}, 16)
	enc := func(e *base64.Encoding) string { return e.EncodeToString(hash) + ":" + e.EncodeToString(block) }
	valid := []struct{ name, in string }{
		{"std padded", enc(base64.StdEncoding)},
		{"std raw", enc(base64.RawStdEncoding)},
		{"url padded", enc(base64.URLEncoding)},
		{"url raw", enc(base64.RawURLEncoding)},
		{"mixed", base64.StdEncoding.EncodeToString(hash) + ":" + base64.RawURLEncoding.EncodeToString(block)},
		{"surrounding space", "  " + enc(base64.StdEncoding) + "\n"},
	}
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			k, err := session.ParseKeyPair(tc.in)
			if err != nil {
				t.Fatalf("ParseKeyPair(%s) = %v, want the pair", tc.name, err)
			}
			if !bytes.Equal(k.Hash, hash) || !bytes.Equal(k.Block, block) {
				t.Errorf("ParseKeyPair(%s) decoded other bytes", tc.name)
			}
		})
	}
	secret := base64.StdEncoding.EncodeToString(hash)
	invalid := []struct{ name, in string }{
		{"empty", ""},
		{"no colon", secret},
		{"short hash key", base64.StdEncoding.EncodeToString(hash[:16]) + ":" + base64.StdEncoding.EncodeToString(block)},
		{"long block key", secret + ":" + base64.StdEncoding.EncodeToString(append(block, 1))},
		{"not base64", secret + ":" + "not*base64!"},
		{"empty block key", secret + ":"},
		{"three parts", secret + ":" + secret + ":" + secret},
		{"equal halves", secret + ":" + secret},
		{"not strict base64", secret + ":" + base64.StdEncoding.EncodeToString(block)[:42] + "B="},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			_, err := session.ParseKeyPair(tc.in)
			if err == nil {
				t.Fatalf("ParseKeyPair(%s) = nil error, want an error", tc.name)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:20]) {
				t.Errorf("ParseKeyPair(%s) error quotes the key material", tc.name)
			}
		})
	}
}

func TestKeyPairNeverLogs(t *testing.T) {
	k := newKey(t)
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("keys", "key", k)
	if strings.Contains(buf.String(), base64.StdEncoding.EncodeToString(k.Hash)) || !strings.Contains(buf.String(), "[redacted]") {
		t.Errorf("logging a key pair wrote %q, want [redacted]", buf.String())
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := session.NewID()
		b, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil || len(b) < 16 {
			t.Fatalf("NewID() = %q: not base64url of >= 128 bits", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestNewCookieNames(t *testing.T) {
	tests := []struct {
		prefix   string
		insecure bool
		want     session.CookieNames
	}{
		{"", false, session.CookieNames{Access: "__Host-Http-th-at", Refresh: "__Secure-th-rt", ID: "__Host-Http-th-id", LoginPrefix: "__Host-Http-th-login-", Session: "__Host-Http-th-session"}},
		{"th", true, session.CookieNames{Access: "th-at", Refresh: "th-rt", ID: "th-id", LoginPrefix: "th-login-", Session: "th-session"}},
		{"app", false, session.CookieNames{Access: "__Host-Http-app-at", Refresh: "__Secure-app-rt", ID: "__Host-Http-app-id", LoginPrefix: "__Host-Http-app-login-", Session: "__Host-Http-app-session"}},
	}
	for _, tc := range tests {
		if got := session.NewCookieNames(tc.prefix, tc.insecure); got != tc.want {
			t.Errorf("NewCookieNames(%q, %v) = %+v, want %+v", tc.prefix, tc.insecure, got, tc.want)
		}
	}
}

func TestCookieNamesOwns(t *testing.T) {
	n := session.NewCookieNames("th", false)
	tests := []struct {
		name string
		want bool
	}{
		{"__Host-Http-th-at", true},
		{"__Host-Http-th-at.0", true},
		{"__Host-Http-th-at.3", true},
		{"__Host-Http-th-at.17", true},
		{"__Secure-th-rt", true},
		{"__Secure-th-rt.1", true},
		{"__Host-Http-th-id", true},
		{"__Host-Http-th-session", true},
		{"__Host-Http-th-login-abc", true},
		{"__Host-Http-th-login-", true},
		{"__host-http-th-at", true}, // browsers compare the prefix without case
		{"__SECURE-TH-RT.0", true},
		{"__Host-Http-th-at.", false},
		{"__Host-Http-th-at.x", false},
		{"__Host-Http-th-atx", false},
		{"th-at", false}, // the insecure names are not ours in secure mode
		{"__Host-Http-other-at", false},
		{"session", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := n.Owns(tc.name); got != tc.want {
			t.Errorf("Owns(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	if (session.CookieNames{}).Owns("anything") {
		t.Errorf("CookieNames{}.Owns(anything) = true, want false")
	}
	if !session.NewCookieNames("th", true).Owns("th-rt.2") {
		t.Errorf("insecure Owns(th-rt.2) = false, want true")
	}
}

// A key pair prints as [redacted] whichever way fmt is asked, alone, in a slice or in the
// options that carry it.
func TestKeyPairUnprintable(t *testing.T) {
	k := newKey(t)
	secrets := []string{
		base64.StdEncoding.EncodeToString(k.Hash), base64.RawURLEncoding.EncodeToString(k.Hash),
		fmt.Sprintf("%x", k.Hash), fmt.Sprint(k.Hash), fmt.Sprint(k.Hash[:8]),
	}
	opts := session.CookieOptions{Keys: []session.KeyPair{k}}
	for _, out := range []string{
		k.String(), k.GoString(),
		fmt.Sprintf("%v|%+v|%#v|%s|%x|%X|%q|%d", k, k, k, k, k, k, k, k),
		fmt.Sprint([]session.KeyPair{k}), fmt.Sprintf("%+v %#v", opts, opts), fmt.Sprintf("%v", &k),
	} {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Fatalf("printing a key pair wrote its key material: %q", out)
			}
		}
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("printing a key pair wrote %q, want [redacted]", out)
		}
	}
}

// FuzzParseKeyPair: ParseKeyPair never panics, and what it accepts is two distinct
// 32-byte keys.
func FuzzParseKeyPair(f *testing.F) {
	f.Add("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=")
	f.Add(":")
	f.Add("a:b:c")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := session.ParseKeyPair(s)
		if err != nil {
			return
		}
		if len(k.Hash) != session.KeyLen || len(k.Block) != session.KeyLen || string(k.Hash) == string(k.Block) {
			t.Errorf("ParseKeyPair(%q) = %d, %d bytes (equal %v), want two distinct %d-byte keys", s, len(k.Hash), len(k.Block), string(k.Hash) == string(k.Block), session.KeyLen)
		}
	})
}
