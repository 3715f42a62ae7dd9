// Package compose checks docker-compose.yml and examples/dex/dex.yaml without a Docker
// engine: the services agree with each other (issuer, client, redirect URIs, secrets),
// and tokenhandler accepts the configuration compose gives it (tokenhandler
// check-config with the service's environment).
package compose

import (
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tokenhandler/tokenhandler/config"
)

const root = "../.."

type composeFile struct {
	Services map[string]struct {
		Build struct {
			Target string `yaml:"target"`
		} `yaml:"build"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Ports       []string          `yaml:"ports"`
	} `yaml:"services"`
}

type dexFile struct {
	Issuer        string `yaml:"issuer"`
	StaticClients []struct {
		ID                     string   `yaml:"id"`
		Secret                 string   `yaml:"secret"`
		RedirectURIs           []string `yaml:"redirectURIs"`
		PostLogoutRedirectURIs []string `yaml:"postLogoutRedirectURIs"`
	} `yaml:"staticClients"`
	Expiry struct {
		RefreshTokens struct {
			ReuseInterval string `yaml:"reuseInterval"`
		} `yaml:"refreshTokens"`
	} `yaml:"expiry"`
	OAuth2 struct {
		PKCE struct {
			Enforce bool `yaml:"enforce"`
		} `yaml:"pkce"`
	} `yaml:"oauth2"`
}

func load(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestServicesAgree(t *testing.T) {
	var c composeFile
	var d dexFile
	load(t, "docker-compose.yml", &c)
	load(t, "examples/dex/dex.yaml", &d)
	th := c.Services["tokenhandler"].Environment
	api := c.Services["example-api"].Environment
	if len(d.StaticClients) != 1 {
		t.Fatalf("dex.yaml has %d static clients, want 1", len(d.StaticClients))
	}
	client := d.StaticClients[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"TH_OIDC_ISSUER = Dex issuer", th["TH_OIDC_ISSUER"], d.Issuer},
		{"EXAMPLE_API_ISSUER = Dex issuer", api["EXAMPLE_API_ISSUER"], d.Issuer},
		{"TH_OIDC_CLIENT_ID = Dex client id", th["TH_OIDC_CLIENT_ID"], client.ID},
		{"EXAMPLE_API_AUDIENCE = client id (Dex's access-token aud)", api["EXAMPLE_API_AUDIENCE"], client.ID},
		{"TH_OIDC_CLIENT_SECRET = Dex client secret", th["TH_OIDC_CLIENT_SECRET"], client.Secret},
		{"redirect URI", client.RedirectURIs[0], th["TH_PUBLIC_URL"] + "/auth/callback"},
		{"post-logout redirect", client.PostLogoutRedirectURIs[0], th["TH_OIDC_POST_LOGOUT_REDIRECT_URL"]},
		{"strict rotation", d.Expiry.RefreshTokens.ReuseInterval, "0s"},
		{"PKCE enforced", d.OAuth2.PKCE.Enforce, true},
		{"dex sessions (logout endpoint)", c.Services["dex"].Environment["DEX_SESSIONS_ENABLED"], "true"},
		{"tokenhandler image target", c.Services["tokenhandler"].Build.Target, "tokenhandler"},
		{"dex image target", c.Services["dex"].Build.Target, "dex"},
		{"example-api image target", c.Services["example-api"].Build.Target, "example-api"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s: got %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	// The browser reaches tokenhandler and Dex on localhost; the containers reach Dex by
	// its service name, which the issuer must not contain.
	if !strings.HasPrefix(d.Issuer, "http://localhost:5556/") {
		t.Errorf("Dex issuer %q, want it on http://localhost:5556 (published port)", d.Issuer)
	}
	if got := th["TH_OIDC_BACKCHANNEL_BASE_URL"]; got != "http://dex:5556" {
		t.Errorf("TH_OIDC_BACKCHANNEL_BASE_URL = %q, want http://dex:5556", got)
	}
	if got := api["EXAMPLE_API_DISCOVERY_URL"]; got != "http://dex:5556/dex" {
		t.Errorf("EXAMPLE_API_DISCOVERY_URL = %q, want http://dex:5556/dex", got)
	}
	if !strings.Contains(th["TH_ROUTES"], `"upstream":"http://example-api:9000"`) {
		t.Errorf("TH_ROUTES = %s, want /api/ routed to http://example-api:9000", th["TH_ROUTES"])
	}
	for _, p := range append(c.Services["tokenhandler"].Ports, c.Services["dex"].Ports...) {
		if !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("port %q is published on every interface, want 127.0.0.1 only", p)
		}
	}
}

// TestTokenhandlerAcceptsComposeConfig runs tokenhandler check-config with exactly the
// environment compose gives the container (static.dir pointed at the mounted source).
func TestTokenhandlerAcceptsComposeConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tokenhandler")
	}
	var c composeFile
	load(t, "docker-compose.yml", &c)
	svc := c.Services["tokenhandler"]
	bin := filepath.Join(t.TempDir(), "tokenhandler")
	build := exec.Command("go", "build", "-o", bin, "./cmd/tokenhandler")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tokenhandler: %v\n%s", err, out)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range svc.Environment {
		if k == "TH_STATIC_DIR" {
			v = staticSource(t, svc.Volumes, v)
		}
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(bin, "check-config")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("tokenhandler check-config with compose's environment: %v\n%s", err, out)
	}
}

// staticSource maps the container path dir back to the host directory mounted there.
func staticSource(t *testing.T, volumes []string, dir string) string {
	t.Helper()
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == dir {
			abs, err := filepath.Abs(filepath.Join(root, parts[0]))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(abs, "index.html")); err != nil {
				t.Fatalf("the SPA mounted at %s has no index.html: %v", dir, err)
			}
			return abs
		}
	}
	t.Fatalf("no volume is mounted at TH_STATIC_DIR=%s", dir)
	return ""
}

// The compose file's cookie key is public: check-config must know it as a demo key, so
// that it is refused with any public_url but a loopback one.
func TestComposeCookieKeyIsAKnownDemoKey(t *testing.T) {
	var c composeFile
	load(t, "docker-compose.yml", &c)
	key := c.Services["tokenhandler"].Environment["TH_COOKIES_KEYS"]
	if key == "" {
		t.Fatal("docker-compose.yml: tokenhandler has no TH_COOKIES_KEYS")
	}
	if !slices.Contains(config.DemoCookieKeys, key) {
		t.Errorf("docker-compose.yml's TH_COOKIES_KEYS is not in config.DemoCookieKeys: a copy of the demo could run with a public key off loopback")
	}
}

// TestSPALinksResolveInContainer follows every symbolic link in the SPA's directory
// (tokenhandler.js links to the JavaScript client in clients/js) as the container would:
// from the path the SPA is mounted at, through compose's volumes, to a file that exists
// on the host and is the file the link names in the repository.
func TestSPALinksResolveInContainer(t *testing.T) {
	var c composeFile
	load(t, "docker-compose.yml", &c)
	svc := c.Services["tokenhandler"]
	type mount struct{ host, container string }
	var mounts []mount
	for _, v := range svc.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		abs, err := filepath.Abs(filepath.Join(root, parts[0]))
		if err != nil {
			t.Fatal(err)
		}
		mounts = append(mounts, mount{host: abs, container: path.Clean(parts[1])})
	}
	// hostPath maps a path inside the container to the host, through the deepest mount.
	hostPath := func(p string) (string, bool) {
		best := -1
		for i, m := range mounts {
			if (p == m.container || strings.HasPrefix(p, m.container+"/")) &&
				(best < 0 || len(m.container) > len(mounts[best].container)) {
				best = i
			}
		}
		if best < 0 {
			return "", false
		}
		return filepath.Join(mounts[best].host, filepath.FromSlash(strings.TrimPrefix(p, mounts[best].container))), true
	}

	staticDir := svc.Environment["TH_STATIC_DIR"]
	hostDir := staticSource(t, svc.Volumes, staticDir)
	links := 0
	err := filepath.WalkDir(hostDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		links++
		rel, err := filepath.Rel(hostDir, p)
		if err != nil {
			return err
		}
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		inContainer := path.Join(staticDir, filepath.ToSlash(rel))
		resolved := path.Join(path.Dir(inContainer), filepath.ToSlash(target))
		if path.IsAbs(filepath.ToSlash(target)) {
			resolved = filepath.ToSlash(target)
		}
		onHost, ok := hostPath(resolved)
		if !ok {
			t.Errorf("%s -> %s: %s is not mounted in the container (add a volume for it)", rel, target, resolved)
			return nil
		}
		want, err := filepath.EvalSymlinks(p)
		if err != nil {
			t.Errorf("%s -> %s does not resolve in the repository: %v", rel, target, err)
			return nil
		}
		got, err := filepath.EvalSymlinks(onHost)
		if err != nil {
			t.Errorf("%s -> %s: in the container %s, from host %s: %v", rel, target, resolved, onHost, err)
			return nil
		}
		if got != want {
			t.Errorf("%s -> %s: the container sees %s, the repository %s", rel, target, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if links == 0 {
		t.Errorf("no link in %s: the SPA is expected to link tokenhandler.js to clients/js", hostDir)
	}
}
