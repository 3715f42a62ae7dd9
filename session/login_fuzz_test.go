package session_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
)

// swapASCIICase turns ASCII upper case into lower case and back; other bytes stay.
func swapASCIICase(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// usablePrefix is what the stores accept as cookies.prefix.
func usablePrefix(p string) bool {
	if len(p) > 32 {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// FuzzCookieNamesOwns checks CookieNames.Owns, which decides which cookies the proxy
// keeps from upstreams and which Set-Cookie lines of an upstream it drops: every name a
// browser could hold as one of ours (a base name, any chunk of one, any login cookie, in
// any ASCII case) is owned, and a name that does not even contain the prefix is not.
func FuzzCookieNamesOwns(f *testing.F) {
	for _, seed := range []struct {
		prefix   string
		insecure bool
		name     string
	}{
		{"", false, "__Host-Http-th-at.12"},
		{"", false, "__host-http-th-LOGIN-abc"},
		{"", true, "th-rt.x"},
		{"app_1", false, "__Secure-app_1-rt."},
		{"th", false, "theme"},
		{"a-b", true, "a-b-session.007"},
		{"", false, "__Host-Http-th-at.1.2"},
	} {
		f.Add(seed.prefix, seed.insecure, seed.name)
	}
	f.Fuzz(func(t *testing.T, prefix string, insecure bool, name string) {
		if !usablePrefix(prefix) {
			t.Skip()
		}
		n := session.NewCookieNames(prefix, insecure)
		if prefix == "" {
			prefix = "th"
		}
		digits := strings.Map(func(r rune) rune {
			if '0' <= r && r <= '9' {
				return r
			}
			return -1
		}, name)
		if digits == "" {
			digits = "0"
		}
		for _, base := range []string{n.Access, n.Refresh, n.ID, n.Session} {
			for _, v := range []string{base, swapASCIICase(base), base + "." + digits, strings.ToLower(base) + "." + digits} {
				if !n.Owns(v) {
					t.Fatalf("NewCookieNames(%q, %t).Owns(%q) = false, want true", prefix, insecure, v)
				}
			}
			if strings.Trim(name, "0123456789") != "" && isASCII(name) && !strings.HasPrefix(base+"."+name, n.LoginPrefix) {
				if n.Owns(base + "." + name) {
					t.Fatalf("NewCookieNames(%q, %t).Owns(%q) = true for a suffix that is not a chunk number", prefix, insecure, base+"."+name)
				}
			}
		}
		if v := n.LoginPrefix + name; !n.Owns(v) || !n.Owns(swapASCIICase(v)) {
			t.Fatalf("NewCookieNames(%q, %t).Owns(%q) = false for a login cookie", prefix, insecure, v)
		}
		if got, swapped := n.Owns(name), n.Owns(swapASCIICase(name)); got != swapped {
			t.Fatalf("NewCookieNames(%q, %t): Owns(%q) = %t but Owns(%q) = %t", prefix, insecure, name, got, swapASCIICase(name), swapped)
		}
		if isASCII(name) && !strings.Contains(strings.ToLower(name), strings.ToLower(prefix)+"-") && n.Owns(name) {
			t.Fatalf("NewCookieNames(%q, %t).Owns(%q) = true for a name without the prefix", prefix, insecure, name)
		}
	})
}

// FuzzLoginJar sends login cookies a browser really holds, together with a fuzzed Cookie
// header, to LoginJar.Start and LoginJar.Finish with a fuzzed state: a forged login cookie
// or state never finishes a login; Start deletes only login cookies the request carried,
// each once, and never a live login the forgery did not name; Finish always answers
// exactly the deletion of the state's login cookie.
func FuzzLoginJar(f *testing.F) {
	k, err := session.GenerateKeyPair()
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	j, err := session.NewLoginJar(session.LoginOptions{Keys: []session.KeyPair{k}, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	prefix := session.NewCookieNames("", false).LoginPrefix
	live := map[string]string{} // state -> its login cookie's name
	var liveCookies []string
	for _, state := range []string{"state-live-1", "state-live-2"} {
		out, err := j.Start(httptest.NewRequest(http.MethodGet, "https://app.test/auth/login", nil), &session.Login{State: state, Nonce: "n", Verifier: strings.Repeat("v", 43), ReturnTo: "/"})
		if err != nil || len(out) != 1 {
			f.Fatalf("Start(%s) = %d cookies, %v; want one", state, len(out), err)
		}
		live[state] = out[0].Name
		liveCookies = append(liveCookies, out[0].Name+"="+out[0].Value)
	}
	for _, seed := range []struct{ cookie, state string }{
		{"", "state-live-1"},
		{prefix + "AAAAAAAAAAAAAAAAAAAAAA=forged", "state-new"},
		{prefix + "x=1; " + prefix + "x=2; " + prefix + "y=; other=1", "state-live-2"},
		{strings.ToLower(prefix) + "z=1;" + prefix + "=", ""},
		{liveCookies[0], "state-live-1"},
		{"=;;" + prefix, "state-live-9"},
	} {
		f.Add(seed.cookie, seed.state)
	}
	f.Fuzz(func(t *testing.T, cookie, state string) {
		req := func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "https://app.test/auth/callback", nil)
			r.Header["Cookie"] = []string{strings.Join(liveCookies, "; ")}
			if cookie != "" {
				r.Header["Cookie"] = append(r.Header["Cookie"], cookie)
			}
			return r
		}
		carried := map[string]bool{} // every cookie name the request carries, as net/http reads it
		for _, c := range req().Cookies() {
			carried[c.Name] = true
		}
		fuzzNames := map[string]bool{} // the names the fuzzed header carries
		for _, c := range (&http.Request{Header: http.Header{"Cookie": {cookie}}}).Cookies() {
			fuzzNames[c.Name] = true
		}

		// Finish: only a live login's own state finishes, with its own login.
		l, del, err := j.Finish(req(), state)
		if len(del) != 1 || !strings.HasPrefix(del[0].Name, prefix) || del[0].MaxAge >= 0 {
			t.Fatalf("Finish(%q) answered %v, want exactly the deletion of one login cookie", state, del)
		}
		if err != nil {
			if !errors.Is(err, session.ErrNoLogin) {
				t.Fatalf("Finish(%q) = %v, want an error wrapping ErrNoLogin", state, err)
			}
		} else {
			if _, ok := live[state]; !ok {
				t.Fatalf("Finish(%q) finished a login nobody started (cookie header %q)", state, cookie)
			}
			if l == nil || l.State != state || del[0].Name != live[state] {
				t.Fatalf("Finish(%q) = %+v, deleting %s; want its own login", state, l, del[0].Name)
			}
		}
		if _, ok := live[state]; ok && err != nil && !fuzzNames[live[state]] {
			t.Fatalf("Finish(%q) = %v for a live login", state, err)
		}

		// Start: a new login; deletions only of login cookies the request carried.
		if state == "" {
			state = "empty"
		}
		out, err := j.Start(req(), &session.Login{State: "new-" + state, Nonce: "n", Verifier: strings.Repeat("v", 43), ReturnTo: "/"})
		if err != nil {
			if len(state) > 1024 {
				return // the login cookie would be too large
			}
			t.Fatalf("Start(new-%q) = %v", state, err)
		}
		if len(out) == 0 || out[0].MaxAge <= 0 || !strings.HasPrefix(out[0].Name, prefix) {
			t.Fatalf("Start(new-%q) = %v, want the new login cookie first", state, out)
		}
		deleted := map[string]bool{}
		for _, c := range out[1:] {
			switch {
			case c.MaxAge >= 0:
				t.Fatalf("Start answered %s (MaxAge %d) after the new login cookie, want only deletions", c.Name, c.MaxAge)
			case !carried[c.Name]:
				t.Fatalf("Start deleted %q, which the request did not carry (Cookie %q)", c.Name, cookie)
			case !strings.HasPrefix(c.Name, prefix):
				t.Fatalf("Start deleted %q, not a login cookie", c.Name)
			case deleted[c.Name]:
				t.Fatalf("Start deleted %q twice", c.Name)
			}
			deleted[c.Name] = true
		}
		for s, name := range live {
			if deleted[name] && !fuzzNames[name] {
				t.Fatalf("Start deleted the live login %s (%s), which the forged cookies did not name", name, s)
			}
		}
	})
}
