package session_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
)

// A CookieStore returns the cookies to set instead of writing them; a later request that
// carries them loads the same session.
func ExampleCookieStore() {
	key, _ := session.GenerateKeyPair() // in production: cookies.keys, session.ParseKeyPair
	store, err := session.NewCookieStore(session.CookieOptions{
		Keys:         []session.KeyPair{key},
		RefreshPaths: []string{"/api/", "/auth/refresh", "/auth/logout", "/auth/userinfo"},
		Lifetime:     12 * time.Hour,
	})
	if err != nil {
		panic(err)
	}
	now := time.Now()
	s := &session.Session{
		ID: session.NewID(), Subject: "user-1", AccessToken: "at", RefreshToken: "rt",
		AccessIssued: now, AccessExpiry: now.Add(5 * time.Minute), Expiry: now.Add(12 * time.Hour),
	}
	// At the callback:
	cookies, err := store.Save(context.Background(), httptest.NewRequest(http.MethodGet, "/auth/callback", nil), s)
	if err != nil {
		panic(err)
	}
	// A later API call carries what the browser sends to /api/...
	r := httptest.NewRequest(http.MethodGet, "/api/items", nil)
	for _, c := range cookies {
		if c.MaxAge > 0 && (c.Path == "/" || c.Path == "/api/") {
			r.AddCookie(c)
		}
	}
	got, err := store.Load(context.Background(), r)
	fmt.Println(got.Subject, got.RefreshToken, err)
	// Output: user-1 rt <nil>
}

// However many requests find the access token expiring at once, the refresh token is
// spent once; requests that still carry it afterwards get the same new tokens.
func ExampleCoordinator_Refresh() {
	c := session.NewCoordinator(session.CoordinatorOptions{Grace: time.Minute})
	calls := 0
	refresh := func(ctx context.Context) (*session.Tokens, error) {
		calls++ // the one call to the provider's token endpoint
		return &session.Tokens{AccessToken: "at-2", RefreshToken: "rt-2", AccessExpiry: time.Now().Add(5 * time.Minute)}, nil
	}
	first, _ := c.Refresh(context.Background(), "rt-1", refresh)
	late, _ := c.Refresh(context.Background(), "rt-1", refresh) // a request still holding rt-1
	fmt.Println(first.RefreshToken, late.RefreshToken, calls)
	// Output: rt-2 rt-2 1
}
