package testbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// ErrFormAgain is wrapped by SignIn's error when the provider shows its form again
// after it was posted: wrong credentials, most likely.
var ErrFormAgain = errors.New("the provider showed its form again after it was posted")

// Flow is one browser-like walk through a provider's pages (see SignIn).
type Flow struct {
	// Username and Password are filled into the login form's login and password fields.
	Username, Password string
	// Confirm makes the flow post a form without a password field (Dex's logout
	// confirmation) instead of a login form; Username and Password are not used.
	Confirm bool
	// Provider reports whether a page is the provider's own, where forms are filled.
	// Nil: every page.
	Provider func(*url.URL) bool
	// StopAt, if not nil, stops the flow at the first redirect to a URL it accepts: the
	// redirect is not followed, and its target is returned in Result.Stopped.
	StopAt func(*url.URL) bool
	// BeforePost, if not nil, is called before a login form is posted (for counting).
	BeforePost func()
}

// Result is where a Flow ended.
type Result struct {
	// Response is the last response, its body readable from the start (the caller
	// closes it). When the flow stopped at a redirect, its body is drained and closed.
	Response *http.Response
	Stopped  *url.URL // the redirect target StopAt accepted; nil if none
	Posted   bool     // whether a form was posted
}

// SignIn walks c through a sign-in as a browser would: it GETs startURL, follows the
// redirects to the provider, fills in and posts the provider's form at most once, and
// follows redirects until they end or f.StopAt accepts one. When the provider
// remembers the user, no form is shown and none is posted. It also follows an
// RP-initiated logout, with f.Confirm.
func SignIn(ctx context.Context, c *http.Client, startURL string, f Flow) (Result, error) {
	cc := *c
	var res Result
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if f.StopAt != nil && f.StopAt(req.URL) {
			res.Stopped = req.URL
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, startURL, nil)
	if err != nil {
		return res, fmt.Errorf("testbench: sign in: GET %s: %w", startURL, err)
	}
	resp, err := cc.Do(req)
	if err != nil {
		return res, fmt.Errorf("testbench: sign in: GET %s: %w", startURL, err)
	}
	for {
		res.Response = resp
		if res.Stopped != nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return res, nil
		}
		var form *Form
		if f.Provider == nil || f.Provider(resp.Request.URL) {
			form = FormIn(resp, !f.Confirm)
		}
		if form == nil {
			return res, nil
		}
		if res.Posted {
			resp.Body.Close()
			return res, fmt.Errorf("testbench: sign in: %w: at %s (%s)", ErrFormAgain, resp.Request.URL.Redacted(), resp.Status)
		}
		resp.Body.Close()
		if !f.Confirm {
			form.Values.Set("login", f.Username)
			form.Values.Set("password", f.Password)
			if f.BeforePost != nil {
				f.BeforePost()
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, form.Action, strings.NewReader(form.Values.Encode()))
		if err != nil {
			return res, fmt.Errorf("testbench: sign in: POST %s: %w", form.Action, err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res.Posted = true
		if resp, err = cc.Do(req); err != nil {
			return res, fmt.Errorf("testbench: sign in: POST %s: %w", form.Action, err)
		}
	}
}

// Form is an HTML form to submit: its absolute action URL and its initial values.
type Form struct {
	Action string
	Values url.Values
}

var (
	formRe  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	inputRe = regexp.MustCompile(`(?is)<input\b([^>]*)>`)
	attrRe  = regexp.MustCompile(`(?is)([a-z_:][-a-z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>` + "`" + `]+)))?`)
)

// FormIn returns the first POST form of an HTML page with a password field (login) or
// without one (!login), or nil. It leaves resp.Body readable from the start.
func FormIn(resp *http.Response, login bool) *Form {
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return FindForm(resp.Request.URL, body, login)
}

// FindForm returns the first POST form in body, a page at page, with a password field
// (login) or without one (!login), or nil. Unchecked checkboxes and radio buttons are
// left out of its values, as a browser leaves them out.
func FindForm(page *url.URL, body []byte, login bool) *Form {
	for _, m := range formRe.FindAllSubmatch(body, -1) {
		attrs := attributes(string(m[1]))
		if !strings.EqualFold(attrs["method"], "post") {
			continue
		}
		values := url.Values{}
		hasPassword := false
		for _, in := range inputRe.FindAllSubmatch(m[2], -1) {
			a := attributes(string(in[1]))
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
		action, err := page.Parse(attrs["action"]) // empty: the page's own URL
		if err != nil {
			continue
		}
		return &Form{Action: action.String(), Values: values}
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

// PeekGrantType reads grant_type from a form body and puts the body back unchanged:
// for a front proxy that counts token-endpoint calls by grant.
func PeekGrantType(r *http.Request) string { return PeekForm(r).Get("grant_type") }

// PeekForm parses the first 64 KiB of r's body as a form and puts the body back
// unchanged (a front proxy forwards it); empty without a body or when it does not parse.
func PeekForm(r *http.Request) url.Values {
	if r.Body == nil || r.Body == http.NoBody {
		return url.Values{}
	}
	head, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
	form, err := url.ParseQuery(string(head))
	if err != nil {
		return url.Values{}
	}
	return form
}
