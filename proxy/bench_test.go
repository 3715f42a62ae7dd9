package proxy

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// staticStore returns the same session for every request, as a cookie store does once it
// has opened the cookies.
type staticStore struct{ s *session.Session }

func (st staticStore) Load(context.Context, *http.Request) (*session.Session, error) {
	cp := *st.s
	return &cp, nil
}
func (staticStore) Save(context.Context, *http.Request, *session.Session) ([]*http.Cookie, error) {
	return nil, nil
}
func (staticStore) Delete(context.Context, *http.Request, *session.Session) ([]*http.Cookie, error) {
	return nil, nil
}

// jwtLike returns a token of n bytes shaped like a JWT.
func jwtLike(n int) string {
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT","kid":"k1"}`))
	sig := strings.Repeat("s", 342) // an RS256 signature
	body := strings.Repeat("p", max(n-len(head)-len(sig)-2, 1))
	return head + "." + body + "." + sig
}

func BenchmarkProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"items":[1,2,3]}`)
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	now := time.Now()

	proofer := newProofer(b)
	for _, size := range []struct {
		name      string
		n         int
		tokenType string // "DPoP": a bound token, a proof per request (EdDSA)
	}{{"token=1.2KB", 1200, ""}, {"token=3KB", 3000, ""}, {"token=1.2KB/dpop=EdDSA", 1200, "DPoP"}} {
		b.Run(size.name, func(b *testing.B) {
			tok := jwtLike(size.n)
			s := &session.Session{
				ID: "sid", Subject: "alice", AccessToken: tok, RefreshToken: "rt", TokenType: size.tokenType,
				AccessIssued: now, AccessExpiry: now.Add(time.Hour), Expiry: now.Add(12 * time.Hour),
			}
			h, err := New(staticStore{s}, &fakeTokens{}, Options{
				DPoP:        proofer,
				Routes:      []Route{{Path: "/api/", Upstream: target}},
				RefreshSkew: 30 * time.Second,
				CSRF:        &web.CSRF{PublicOrigin: publicOrigin},
				OwnCookie:   ownCookie,
				Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			serveBench(b, h, benchRequest(size.n))
		})
	}
}

// benchRequest is the API call a browser makes with a session whose access token is
// tokenSize bytes: the cookies it sends (sealed tokens are about a third larger), the
// CSRF header and the usual others.
func benchRequest(tokenSize int) *http.Request {
	cookie := atName + "=" + strings.Repeat("c", tokenSize*4/3) + "; " + idName + "=" +
		strings.Repeat("i", 1400) + "; " + rtName + "=" + strings.Repeat("r", 400) + "; theme=dark"
	r := httptest.NewRequest("GET", "/api/items?page=2", nil)
	r.Host = "app.example.com"
	r.Header.Set("X-CSRF", "1")
	r.Header.Set("Cookie", cookie)
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0")
	return r
}

// serveBench serves r through h b.N times, each answered 200.
func serveBench(b *testing.B, h http.Handler, r *http.Request) {
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status = %d, want 200", w.Code)
		}
	}
}
