package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// echoServer answers every request with its own body, or with status when the body is
// "fail".
func echoServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) == "grant_type=refresh_token&fail=1" {
			w.WriteHeader(http.StatusBadRequest)
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// onlyReader hides every method but Read, so http.NewRequest cannot set GetBody.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestTransportCounts(t *testing.T) {
	srv := echoServer(t)
	form := "application/x-www-form-urlencoded"
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		noGetBody   bool
		grant       string // "" = not counted
		status      string
	}{
		{"refresh", "POST", form, "grant_type=refresh_token&refresh_token=x", false, "refresh_token", "200"},
		{"code", "POST", form + "; charset=utf-8", "code=abc&grant_type=authorization_code", false, "authorization_code", "200"},
		{"refused refresh", "POST", form, "grant_type=refresh_token&fail=1", false, "refresh_token", "400"},
		{"without GetBody", "POST", form, "grant_type=refresh_token&refresh_token=y", true, "refresh_token", "200"},
		{"unknown grant bounded", "POST", form, "grant_type=" + strings.Repeat("z", 300), false, "other", "200"},
		{"revocation is not a token call", "POST", form, "token=x&token_type_hint=refresh_token", false, "", ""},
		{"json body", "POST", "application/json", `{"grant_type":"refresh_token"}`, false, "", ""},
		{"GET with query", "GET", "", "", false, "", ""},
		{"bad pair elsewhere", "POST", form, "a=%zz&grant_type=refresh_token", false, "refresh_token", "200"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			client := &http.Client{Transport: m.Transport(nil)}
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
				if tc.noGetBody {
					body = onlyReader{body}
				}
			}
			req, err := http.NewRequest(tc.method, srv.URL+"/token?grant_type=refresh_token", body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("Do() error = %v", err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			// The body arrives whole: counting never consumes it.
			if string(got) != tc.body {
				t.Errorf("server received body %q, want %q", got, tc.body)
			}
			total := 0.0
			mfs, _ := m.Gatherer().Gather()
			for _, mf := range mfs {
				if mf.GetName() == "tokenhandler_token_endpoint_requests_total" {
					for _, s := range mf.GetMetric() {
						total += s.GetCounter().GetValue()
					}
				}
			}
			if tc.grant == "" {
				if total != 0 {
					t.Errorf("token_endpoint_requests_total = %v, want 0 (not a token request)", total)
				}
				return
			}
			v, ok := sample(t, m, "tokenhandler_token_endpoint_requests_total", map[string]string{"grant_type": tc.grant, "status": tc.status})
			if !ok || v != 1 || total != 1 {
				t.Errorf("token_endpoint_requests_total{grant_type=%q,status=%q} = %v (total %v), want 1", tc.grant, tc.status, v, total)
			}
		})
	}
}

func TestTransportDoesNotModifyRequest(t *testing.T) {
	srv := echoServer(t)
	m := New()
	tr := m.Transport(nil)
	orig := onlyReader{strings.NewReader("grant_type=refresh_token")}
	req, _ := http.NewRequest("POST", srv.URL, orig)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	body := req.Body
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if req.Body != body {
		t.Errorf("RoundTrip replaced the caller's req.Body; a RoundTripper must not modify the request")
	}
}

func TestTransportError(t *testing.T) {
	m := New()
	boom := errors.New("connection refused")
	tr := m.Transport(roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, boom }))
	req, _ := http.NewRequest("POST", "http://127.0.0.1:1/token", strings.NewReader("grant_type=refresh_token"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if _, err := tr.RoundTrip(req); !errors.Is(err, boom) {
		t.Fatalf("RoundTrip() error = %v, want %v", err, boom)
	}
	if v, _ := sample(t, m, "tokenhandler_token_endpoint_requests_total", map[string]string{"grant_type": "refresh_token", "status": "error"}); v != 1 {
		t.Errorf("token_endpoint_requests_total{refresh_token,error} = %v, want 1", v)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestTransportWithOAuth2 counts what golang.org/x/oauth2 really sends: one exchange and
// one refresh, each exactly once (AuthStyle set explicitly, so no auto-detect retry).
func TestTransportWithOAuth2(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Errorf("ParseForm() = %v", err)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"at","token_type":"Bearer","expires_in":60,"refresh_token":"rt2"}`)
	}))
	defer srv.Close()
	m := New()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: m.Transport(nil)})
	cfg := &oauth2.Config{
		ClientID: "c", ClientSecret: "s",
		Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token", AuthStyle: oauth2.AuthStyleInHeader},
	}
	if _, err := cfg.Exchange(ctx, "the-code", oauth2.VerifierOption("v")); err != nil {
		t.Fatalf("Exchange() error = %v", err)
	}
	if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: "rt1"}).Token(); err != nil {
		t.Fatalf("Token() error = %v", err)
	}
	for _, g := range []string{"authorization_code", "refresh_token"} {
		if v, _ := sample(t, m, "tokenhandler_token_endpoint_requests_total", map[string]string{"grant_type": g, "status": "200"}); v != 1 {
			t.Errorf("token_endpoint_requests_total{%s,200} = %v, want 1", g, v)
		}
	}
}

func BenchmarkTransportGrantType(b *testing.B) {
	body := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {strings.Repeat("r", 200)}}.Encode()
	for b.Loop() {
		req, _ := http.NewRequest("POST", "http://127.0.0.1/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		grantType(req)
	}
}
