package idptest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestFormIn reads forms as the providers write them: Dex's escaped action URL,
// attributes without values, unchecked checkboxes, a logout form without password.
func TestFormIn(t *testing.T) {
	front := httptest.NewServer(http.NotFoundHandler())
	defer front.Close()
	p := &Provider{front: front}
	page := func(path, body string) *http.Response {
		u, _ := url.Parse(front.URL + path)
		return &http.Response{
			StatusCode: http.StatusOK,
			Header:     http.Header{"Content-Type": {"text/html; charset=utf-8"}},
			Body:       io.NopCloser(strings.NewReader(body)),
			Request:    &http.Request{URL: u},
		}
	}
	const dexLogin = `<form class="x" method="post" action="/dex/auth/local/login?back=&amp;state=abc">
	  <input tabindex="1" required id="login" name="login" type="text" placeholder="email address" autofocus/>
	  <input tabindex="2" required id="password" name="password" type="password" placeholder="password"/>
	  <input tabindex="3" type="checkbox" name="remember_me" />
	  <input type=hidden name='req' value='r&#39;1'>
	  <button type="submit">Login</button></form>`
	const dexLogout = `<form method="post" action="/dex/logout"><button type="submit">Log Out</button></form>`

	resp := page("/dex/auth/local", dexLogin)
	f := p.formIn(resp, true)
	if f == nil {
		t.Fatal("formIn(Dex login page) = nil, want the form")
	}
	if want := front.URL + "/dex/auth/local/login?back=&state=abc"; f.Action != want {
		t.Errorf("action = %q, want %q", f.Action, want)
	}
	if got := f.Values.Encode(); got != "login=&password=&req=r%271" {
		t.Errorf("values = %q, want login, password and req (no unchecked box)", got)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != dexLogin {
		t.Errorf("body after formIn = %q, want it readable from the start", b)
	}
	if f := p.formIn(page("/dex/auth/local", dexLogin), false); f != nil {
		t.Errorf("formIn(login page, !login) = %+v, want nil", f)
	}
	if f := p.formIn(page("/dex/logout", dexLogout), false); f == nil || f.Action != front.URL+"/dex/logout" {
		t.Errorf("formIn(Dex logout page) = %+v, want the confirmation form", f)
	}
	if f := p.formIn(page("/dex/logout", dexLogout), true); f != nil {
		t.Errorf("formIn(logout page, login) = %+v, want nil", f)
	}
	other := page("/x", dexLogin)
	other.Request.URL, _ = url.Parse("http://127.0.0.1:1/x")
	if f := p.formIn(other, true); f != nil {
		t.Errorf("formIn(page of another host) = %+v, want nil: only the provider's forms are filled", f)
	}
}

func TestDexSubject(t *testing.T) {
	// Seen in a Dex ID token for user id "alice" and the connector "local".
	if got, want := dexSubject("alice", "local"), "CgVhbGljZRIFbG9jYWw"; got != want {
		t.Errorf("dexSubject(alice, local) = %q, want %q", got, want)
	}
}
