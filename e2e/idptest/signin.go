package idptest

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
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
	return p.drive(t, c, startURL, nil, true).Response
}

// Authorize is SignIn stopped at the first redirect to a URL that starts with
// redirectPrefix (tokenhandler's callback): that redirect is not followed, and its target
// is returned, so a test can tamper with state or code, replay a code, and so on. It
// fails the test if the flow ends anywhere else.
func (p *Provider) Authorize(t testing.TB, c *http.Client, startURL, redirectPrefix string) *url.URL {
	t.Helper()
	res := p.drive(t, c, startURL, func(u *url.URL) bool {
		return strings.HasPrefix(u.String(), redirectPrefix)
	}, true)
	if res.Stopped == nil {
		resp := res.Response
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		resp.Body.Close()
		t.Fatalf("idptest: Authorize(%s): never redirected to %s; ended at %s: %s: %s",
			p.Kind, redirectPrefix, resp.Request.URL.Redacted(), resp.Status, body)
	}
	return res.Stopped
}

// Logout follows an RP-initiated logout URL (the end_session_endpoint with its
// parameters, e.g. the logout_url tokenhandler returns) with c, confirms the logout
// where the provider asks (Dex without id_token_hint shows a confirmation form), and
// follows redirects until they end. It returns the final response, body unread.
func (p *Provider) Logout(t testing.TB, c *http.Client, logoutURL string) *http.Response {
	t.Helper()
	return p.drive(t, c, logoutURL, nil, false).Response
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

// drive runs testbench.SignIn with the demo user's credentials on the provider's own
// pages: the login form if login, a confirmation form without password field otherwise.
func (p *Provider) drive(t testing.TB, c *http.Client, startURL string, stopAt func(*url.URL) bool, login bool) testbench.Result {
	t.Helper()
	res, err := testbench.SignIn(t.Context(), c, startURL, testbench.Flow{
		Username:   p.Username,
		Password:   p.Password,
		Confirm:    !login,
		Provider:   p.ownPage,
		StopAt:     stopAt,
		BeforePost: func() { p.formPosts.Add(1) },
	})
	if err != nil {
		t.Fatalf("idptest: %s: %v", p.Kind, err)
	}
	return res
}

// ownPage reports whether u is a page of the provider (its issuer or login app host),
// the only pages whose forms are filled.
func (p *Provider) ownPage(u *url.URL) bool {
	return u.Host == hostOf(p.front.URL) || (p.login != nil && u.Host == hostOf(p.login.URL))
}

// formIn returns the form on resp's page when the page is the provider's own and holds
// a POST form with a password field (login) or without one (!login). It leaves
// resp.Body readable from the start.
func (p *Provider) formIn(resp *http.Response, login bool) *testbench.Form {
	if !p.ownPage(resp.Request.URL) {
		return nil
	}
	return testbench.FormIn(resp, login)
}

func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Host
}
