package testbench

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/coreos/go-oidc/v3/oidc/oidctest"
)

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST": true, "app.localhost": true, "127.0.0.1": true,
		"127.255.0.1": true, "::1": true, "[::1]": true, "localhost.": true,
		"example.com": false, "10.0.0.1": false, "localhost.example.com": false, "": false,
		"0.0.0.0": false,
	} {
		if got := IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[string]string{"3s": "3s", "1500ms": "1500ms", "2m": "120s", "0s": "0s"} {
		pd, _ := time.ParseDuration(d)
		if got := Duration(pd); got != want {
			t.Errorf("Duration(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestFreePortsDistinct(t *testing.T) {
	ports, err := FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("FreePorts(4) = %v, want 4 distinct ports", ports)
		}
		seen[p] = true
	}
}

func shell(t *testing.T) string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	return sh
}

// TestStopKillsWhatIgnoresTERM: a child that ignores SIGTERM is killed after the grace,
// and so is its own child (the process group).
func TestStopKillsWhatIgnoresTERM(t *testing.T) {
	dir := t.TempDir()
	p, err := Start(Spec{
		Name: "stubborn", Bin: shell(t),
		Args:    []string{"-c", `trap "" TERM; sleep 60 & echo started; wait`},
		Env:     BaseEnv(),
		LogPath: filepath.Join(dir, "out.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := Poll(ctx, 10*time.Millisecond, func(context.Context) (bool, error) {
		return strings.Contains(p.Tail(1), "started"), nil
	}); err != nil {
		t.Fatalf("the child never started: %v", err)
	}
	p.Stop(100 * time.Millisecond)
	if !p.Exited() || p.Err() == nil {
		t.Errorf("after Stop: exited %v, err %v; want exited by a signal", p.Exited(), p.Err())
	}
}

func TestWaitHTTPSeesExit(t *testing.T) {
	dir := t.TempDir()
	p, err := Start(Spec{Bin: shell(t), Args: []string{"-c", "exit 3"}, Env: BaseEnv(), LogPath: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := WaitHTTP(ctx, p, "http://127.0.0.1:1/", http.StatusOK, 10*time.Millisecond); !errors.Is(err, ErrExited) {
		t.Errorf("WaitHTTP(an exited process) = %v, want ErrExited", err)
	}
}

// TestSignIn posts a login form once with the credentials, follows the redirects, and
// fails when the form comes back.
func TestSignIn(t *testing.T) {
	const page = `<form method="post" action="/login?x=&amp;y=1"><input name="login"><input type="password" name="password"><input type=hidden name=csrf value='c1'></form>`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/start":
			http.Redirect(w, r, "/form", http.StatusFound)
		case "/form":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, page)
		case "/login":
			if r.PostFormValue("login") == "alice" && r.PostFormValue("password") == "pw" && r.PostFormValue("csrf") == "c1" {
				http.Redirect(w, r, "/callback?code=1", http.StatusSeeOther)
				return
			}
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, page)
		case "/callback":
			io.WriteString(w, "signed in")
		}
	}))
	defer srv.Close()
	jar, _ := NewJar()
	c := &http.Client{Jar: jar}
	posts := 0
	res, err := SignIn(t.Context(), c, srv.URL+"/start", Flow{Username: "alice", Password: "pw", BeforePost: func() { posts++ }})
	if err != nil || !res.Posted || posts != 1 || res.Response.Request.URL.Path != "/callback" {
		t.Fatalf("SignIn = posted %v (%d), ended at %v, %v; want one post ending at /callback", res.Posted, posts, res.Response.Request.URL, err)
	}
	res.Response.Body.Close()
	res, err = SignIn(t.Context(), c, srv.URL+"/start", Flow{Username: "alice", Password: "pw", StopAt: func(u *url.URL) bool { return u.Path == "/callback" }})
	if err != nil || res.Stopped == nil || res.Stopped.Query().Get("code") != "1" {
		t.Errorf("SignIn with StopAt = stopped at %v, %v; want the callback URL", res.Stopped, err)
	}
	if _, err := SignIn(t.Context(), c, srv.URL+"/start", Flow{Username: "alice", Password: "wrong"}); !errors.Is(err, ErrFormAgain) {
		t.Errorf("SignIn with a wrong password = %v, want ErrFormAgain", err)
	}
}

// TestSignerVerifies: what Signer signs, go-oidc verifies against Signer's key.
func TestSignerVerifies(t *testing.T) {
	s, err := NewSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	idp := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: s.Key.Public(), KeyID: s.KeyID, Algorithm: oidc.RS256}}}
	srv := httptest.NewServer(idp)
	defer srv.Close()
	idp.SetIssuer(srv.URL)
	tok, err := s.Sign(map[string]any{"iss": srv.URL, "aud": "c", "sub": "alice", "exp": time.Now().Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := oidc.NewProvider(t.Context(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Verifier(&oidc.Config{ClientID: "c"}).Verify(t.Context(), tok); err != nil {
		t.Errorf("Verify(signed token) = %v", err)
	}
	other, _ := NewSigner("k1")
	forged, _ := other.Sign(map[string]any{"iss": srv.URL, "aud": "c", "sub": "alice", "exp": time.Now().Add(time.Minute).Unix()})
	if _, err := p.Verifier(&oidc.Config{ClientID: "c"}).Verify(t.Context(), forged); err == nil {
		t.Errorf("Verify(token of another key) = nil, want an error")
	}
}
