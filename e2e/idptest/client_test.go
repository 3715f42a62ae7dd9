package idptest_test

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
)

func TestSetCookieProblems(t *testing.T) {
	tests := []struct {
		name, line string
		problem    string // a part of the one problem expected; "" for none
	}{
		{"host ok", "__Host-Http-th-at=v; Path=/; Secure; HttpOnly; SameSite=Strict", ""},
		{"host deletion ok", "__Host-Http-th-at=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict", ""},
		{"host attributes any case", "__Host-a=1; secure; PATH=/", ""},
		{"host last path wins", "__Host-a=1; Path=/x; Path=/; Secure", ""},
		{"host without secure", "__Host-a=1; Path=/; HttpOnly", "no Secure"},
		{"host deletion without secure", "__Host-a=; Path=/; Max-Age=0", "no Secure"},
		{"host without path", "__Host-a=1; Secure", `Path ""`},
		{"host with other path", "__Host-a=; Path=/api/; Secure; Max-Age=0", `Path "/api/"`},
		{"host with domain", "__Host-a=1; Path=/; Secure; Domain=127.0.0.1", "has Domain"},
		{"host prefix in upper case", "__HOST-a=1; Path=/", "no Secure"},
		{"secure ok with path", "__Secure-th-rt=v; Path=/api/; Secure; HttpOnly", ""},
		{"secure ok with domain", "__Secure-a=v; Domain=example.com; Secure", ""},
		{"secure without secure", "__Secure-th-rt=v; Path=/api/; HttpOnly", "no Secure"},
		{"secure deletion without secure", "__secure-th-rt=; Path=/auth/logout; Max-Age=0", "no Secure"},
		{"secure as a value is not the attribute", "__Secure-a=Secure; Path=/", "no Secure"},
		{"no prefix", "session=v; Path=/x", ""},
		{"no prefix no secure", "__Hostile=v", ""},
		{"no equals sign: a value without name", "__Host-a; Path=/x", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Set-Cookie": {tc.line}}
			got := idptest.SetCookieProblems(h)
			switch {
			case tc.problem == "" && len(got) != 0:
				t.Errorf("SetCookieProblems(%q) = %q, want none", tc.line, got)
			case tc.problem != "" && (len(got) != 1 || !strings.Contains(got[0], tc.problem)):
				t.Errorf("SetCookieProblems(%q) = %q, want one containing %q", tc.line, got, tc.problem)
			}
		})
	}
}

func TestCheckSetCookiesReportsEach(t *testing.T) {
	rec := httptest.NewRecorder()
	http.SetCookie(rec, &http.Cookie{Name: "__Host-a", Value: "1", Path: "/", Secure: true})
	http.SetCookie(rec, &http.Cookie{Name: "__Host-b", Value: "1", Path: "/api/", Secure: true})
	http.SetCookie(rec, &http.Cookie{Name: "__Secure-c", Value: "", Path: "/x/", MaxAge: -1})
	f := run(func(tb testing.TB) { idptest.CheckSetCookies(tb, rec.Header()) })
	if len(f.errors) != 2 || !strings.Contains(f.errors[0], "__Host-b") || !strings.Contains(f.errors[1], "__Secure-c") {
		t.Errorf("CheckSetCookies errors = %q, want one for __Host-b and one for __Secure-c", f.errors)
	}
}

// TestNewClient checks that the client sends Secure cookies back over http on loopback
// as a browser does, and reports a Set-Cookie that a browser would ignore.
func TestNewClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/set":
			w.Header().Add("Set-Cookie", "__Host-ok=1; Path=/; Secure; HttpOnly")
			w.Header().Add("Set-Cookie", "__Host-bad=1; Path=/")
			http.Redirect(w, r, "/echo", http.StatusFound)
		case "/echo":
			for _, c := range r.Cookies() {
				fmt.Fprintf(w, "%s=%s;", c.Name, c.Value)
			}
		}
	}))
	defer srv.Close()

	var body string
	f := run(func(tb testing.TB) {
		c := idptest.NewClient(tb)
		resp, err := c.Get(srv.URL + "/set") // follows the redirect to /echo
		if err != nil {
			tb.Errorf("GET /set: %v", err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
	})
	if len(f.errors) != 1 || !strings.Contains(f.errors[0], "__Host-bad") {
		t.Errorf("NewClient reported %q, want one problem with __Host-bad", f.errors)
	}
	// The Secure cookie came back over http://127.0.0.1; the bad one was kept too,
	// since Go's jar does not apply prefix rules (which is why they are checked).
	if !strings.Contains(body, "__Host-ok=1;") {
		t.Errorf("cookies sent back = %q, want __Host-ok=1 among them", body)
	}
}

func TestNewClientSecureOnlyOnLoopback(t *testing.T) {
	c := idptest.NewClient(t)
	secure := &http.Cookie{Name: "s", Value: "1", Path: "/", Secure: true}
	for _, tc := range []struct {
		host string
		sent bool
	}{
		{"127.0.0.1", true},
		{"127.8.9.10", true},
		{"localhost", true},
		{"[::1]", true},
		{"example.test", false},
	} {
		c.Jar.SetCookies(&url.URL{Scheme: "https", Host: tc.host, Path: "/"}, []*http.Cookie{secure})
		got := len(c.Jar.Cookies(&url.URL{Scheme: "http", Host: tc.host, Path: "/"})) == 1
		if got != tc.sent {
			t.Errorf("Secure cookie sent to http://%s = %v, want %v", tc.host, got, tc.sent)
		}
	}
}

func FuzzSetCookieProblems(f *testing.F) {
	for _, s := range []string{
		"__Host-a=1; Path=/; Secure", "__Secure-b=; Max-Age=0", "a=b", "__Host-", "=;;;",
		"__host-x=1;path=/;domain=;secure", "__Secure-=; Secure=no",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		got := idptest.SetCookieProblems(http.Header{"Set-Cookie": {line}})
		if len(got) > 1 {
			t.Fatalf("SetCookieProblems(%q) = %q, want at most one problem per line", line, got)
		}
		name, _, ok := strings.Cut(strings.Split(line, ";")[0], "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok {
			name = ""
		}
		prefixed := strings.HasPrefix(name, "__host-") || strings.HasPrefix(name, "__secure-")
		if !prefixed && len(got) != 0 {
			t.Fatalf("SetCookieProblems(%q) = %q for a cookie without prefix", line, got)
		}
	})
}

// fakeTB records what a helper reports; Fatal ends its goroutine as the real one does.
type fakeTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
	fatal  bool
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	f.fatal = true
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func run(fn func(testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

// TestTestKey checks the test key's products against go-jose's own parsing: the PEM
// is the same key, the thumbprint is RFC 7638's, a DPoP proof embeds the public key only.
func TestTestKey(t *testing.T) {
	k := idptest.NewTestKey(t)
	block, _ := pem.Decode(k.PEM())
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil || !k.Private.Equal(parsed) {
		t.Fatalf("PEM() does not parse back to the key: %v", err)
	}
	proof := k.DPoPProof(t, http.MethodPost, "https://as.example.test/token", "n1", "at")
	jws, err := jose.ParseSigned(proof, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() || h.ExtraHeaders[jose.HeaderType] != "dpop+jwt" {
		t.Fatalf("DPoP proof header: jwk %v, typ %v, want a public jwk and dpop+jwt", h.JSONWebKey, h.ExtraHeaders[jose.HeaderType])
	}
	tp, _ := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if got := base64.RawURLEncoding.EncodeToString(tp); got != k.Thumbprint() {
		t.Errorf("Thumbprint() = %s, the proof's jwk has %s", k.Thumbprint(), got)
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	sum := sha256.Sum256([]byte("at"))
	if claims["htm"] != "POST" || claims["htu"] != "https://as.example.test/token" || claims["nonce"] != "n1" ||
		claims["ath"] != base64.RawURLEncoding.EncodeToString(sum[:]) || claims["jti"] == "" {
		t.Errorf("DPoP proof claims %v", claims)
	}
}
