package idptest

import (
	"bytes"
	"errors"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// SignIn signs the demo user in as a browser would: it GETs startURL (tokenhandler's
// /auth/login?...) with c, follows the redirects to the provider, fills in and posts the
// provider's login form with p.Username and p.Password, and follows redirects until they
// end (through tokenhandler's callback to the return_to page, normally). It returns the
// final response with its body unread; Chain(resp) lists the URLs from the form post on.
// When the provider still remembers the user, no form is shown and none is posted.
// A login form shown again after the post (wrong credentials) fails the test.
func (p *Provider) SignIn(t testing.TB, c *http.Client, startURL string) *http.Response {
	t.Helper()
	resp, _ := p.drive(t, c, startURL, nil, true)
	return resp
}

// Authorize is SignIn stopped at the first redirect to a URL that starts with
// redirectPrefix (tokenhandler's callback): that redirect is not followed, and its target
// is returned, so a test can tamper with state or code, replay a code, and so on. It
// fails the test if the flow ends anywhere else.
func (p *Provider) Authorize(t testing.TB, c *http.Client, startURL, redirectPrefix string) *url.URL {
	t.Helper()
	resp, stopped := p.drive(t, c, startURL, func(u *url.URL) bool {
		return strings.HasPrefix(u.String(), redirectPrefix)
	}, true)
	if stopped == nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		resp.Body.Close()
		t.Fatalf("idptest: Authorize(%s): never redirected to %s; ended at %s: %s: %s",
			p.Kind, redirectPrefix, resp.Request.URL.Redacted(), resp.Status, body)
	}
	return stopped
}

// Logout follows an RP-initiated logout URL (the end_session_endpoint with its
// parameters, e.g. the logout_url tokenhandler returns) with c, confirms the logout
// where the provider asks (Dex without id_token_hint shows a confirmation form), and
// follows redirects until they end. It returns the final response, body unread.
func (p *Provider) Logout(t testing.TB, c *http.Client, logoutURL string) *http.Response {
	t.Helper()
	resp, _ := p.drive(t, c, logoutURL, nil, false)
	return resp
}

// LoginFormPosts returns how many times SignIn and Authorize posted the provider's login
// form; they post none while the provider remembers the user (its session cookie in
// the client's jar), so a test can tell whether a logout ended the provider's session.
func (p *Provider) LoginFormPosts() int64 { return p.formPosts.Load() }

// Chain returns the URLs that led to resp within one client call, redirects
// included, first to last.
func Chain(resp *http.Response) []*url.URL {
	var chain []*url.URL
	for r := resp; r != nil && r.Request != nil; r = r.Request.Response {
		chain = append(chain, r.Request.URL)
	}
	slices.Reverse(chain)
	return chain
}

// drive GETs startURL and submits the provider's form (the login form if login, a
// confirmation form without password field otherwise) at most once, following
// redirects, until stopAt matches a redirect target or the redirects end.
func (p *Provider) drive(t testing.TB, c *http.Client, startURL string, stopAt func(*url.URL) bool, login bool) (*http.Response, *url.URL) {
	t.Helper()
	cc := *c
	var stopped *url.URL
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if stopAt != nil && stopAt(req.URL) {
			stopped = req.URL
			return http.ErrUseLastResponse
		}
		if c.CheckRedirect != nil {
			return c.CheckRedirect(req, via)
		}
		if len(via) >= 20 {
			return errors.New("stopped after 20 redirects")
		}
		return nil
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, startURL, nil)
	if err != nil {
		t.Fatalf("idptest: GET %s: %v", startURL, err)
	}
	resp, err := cc.Do(req)
	if err != nil {
		t.Fatalf("idptest: GET %s: %v", startURL, err)
	}
	for posted := false; ; posted = true {
		if stopped != nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp, stopped
		}
		f := p.formIn(resp, login)
		if f == nil {
			return resp, nil
		}
		if posted {
			t.Fatalf("idptest: %s showed its form again at %s (%s) after it was posted: wrong credentials?",
				p.Kind, resp.Request.URL.Redacted(), resp.Status)
		}
		resp.Body.Close()
		if login {
			f.values.Set("login", p.Username)
			f.values.Set("password", p.Password)
			p.formPosts.Add(1)
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.action, strings.NewReader(f.values.Encode()))
		if err != nil {
			t.Fatalf("idptest: POST %s: %v", f.action, err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if resp, err = cc.Do(req); err != nil {
			t.Fatalf("idptest: POST %s: %v", f.action, err)
		}
	}
}

// form is an HTML form to submit: its absolute action URL and its initial values.
type form struct {
	action string
	values url.Values
}

var (
	formRe  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	inputRe = regexp.MustCompile(`(?is)<input\b([^>]*)>`)
	attrRe  = regexp.MustCompile(`(?is)([a-z_:][-a-z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>` + "`" + `]+)))?`)
)

// formIn returns the form on resp's page when the page is the provider's own (issuer or
// login app host) and holds a POST form with a password field (login) or without one
// (!login). It leaves resp.Body readable from the start.
func (p *Provider) formIn(resp *http.Response, login bool) *form {
	u := resp.Request.URL
	if u.Host != hostOf(p.front.URL) && (p.login == nil || u.Host != hostOf(p.login.URL)) {
		return nil
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	for _, m := range formRe.FindAllStringSubmatch(string(body), -1) {
		attrs := attributes(m[1])
		if !strings.EqualFold(attrs["method"], "post") {
			continue
		}
		values := url.Values{}
		hasPassword := false
		for _, in := range inputRe.FindAllStringSubmatch(m[2], -1) {
			a := attributes(in[1])
			typ := strings.ToLower(a["type"])
			if typ == "password" {
				hasPassword = true
			}
			if _, checked := a["checked"]; (typ == "checkbox" || typ == "radio") && !checked {
				continue
			}
			if a["name"] != "" {
				values.Set(a["name"], a["value"])
			}
		}
		if hasPassword != login {
			continue
		}
		action, err := u.Parse(attrs["action"]) // empty: the page's own URL
		if err != nil {
			continue
		}
		return &form{action: action.String(), values: values}
	}
	return nil
}

// attributes parses the attributes of one HTML tag, lower-cased names, unescaped values.
func attributes(s string) map[string]string {
	attrs := map[string]string{}
	for _, m := range attrRe.FindAllStringSubmatch(s, -1) {
		name := strings.ToLower(m[1])
		if _, seen := attrs[name]; !seen {
			attrs[name] = html.UnescapeString(m[2] + m[3] + m[4])
		}
	}
	return attrs
}

func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Host
}
