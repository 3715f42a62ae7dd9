package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tokenhandler/tokenhandler/josekey"
)

// writeKey writes a fresh PEM key of alg and returns its path.
func writeKey(t *testing.T, alg string) string {
	t.Helper()
	k, err := josekey.Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := k.PEM()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// fapi2Config is a valid configuration under oidc.profile fapi2.
func fapi2Config(t *testing.T) *Config {
	c := validConfig()
	c.OIDC.Profile = "fapi2"
	c.OIDC.TokenAuthMethod = "private_key_jwt"
	c.OIDC.ClientSecret = ""
	c.OIDC.ClientKeyFile = writeKey(t, josekey.PS256)
	c.OIDC.PAR = "required"
	c.OIDC.DPoP = true
	c.DPoP.KeyFile = writeKey(t, josekey.EdDSA)
	c.OIDC.IDTokenSigningAlgs = []string{"PS256", "ES256"}
	return c
}

func TestValidateFAPI2(t *testing.T) {
	if err := fapi2Config(t).Validate(); err != nil {
		t.Fatalf("Validate(fapi2 control) = %v, want nil", err)
	}
	// Everything the profile forbids at once, each named by its key.
	c := fapi2Config(t)
	c.OIDC.TokenAuthMethod = "client_secret_basic"
	c.OIDC.ClientSecret = "hunter2"
	c.OIDC.ClientKeyFile = ""
	c.OIDC.PAR = "off"
	c.OIDC.DPoP = false
	c.OIDC.IDTokenSigningAlgs = []string{"RS256", "ES256"}
	got := joined(c.Validate())
	want := []string{
		`oidc.token_auth_method (TH_OIDC_TOKEN_AUTH_METHOD) is "client_secret_basic", which oidc.profile fapi2 forbids`,
		`oidc.par (TH_OIDC_PAR) is off, which oidc.profile fapi2 forbids`,
		`oidc.dpop (TH_OIDC_DPOP) is false, which oidc.profile fapi2 forbids`,
		`oidc.id_token_signing_algs (TH_OIDC_ID_TOKEN_SIGNING_ALGS) has "RS256", which oidc.profile fapi2 forbids`,
	}
	for _, w := range want {
		if !containsLine(got, w) {
			t.Errorf("Validate() lacks %q", w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Validate() = %q, want exactly %d problems", got, len(want))
	}
	// Without the profile the same settings are fine.
	c.OIDC.Profile = ""
	if err := c.Validate(); err != nil {
		t.Errorf("Validate(same, no profile) = %v, want nil", err)
	}
}

func TestValidateClientKeyAndDPoPKey(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.pem")
	_ = os.WriteFile(bad, []byte("not a key"), 0o600)
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // "" means valid
	}{
		{"private_key_jwt with an EC key", func(c *Config) {
			c.OIDC.TokenAuthMethod, c.OIDC.ClientSecret, c.OIDC.ClientKeyFile = "private_key_jwt", "", writeKey(t, josekey.ES256)
		}, ""},
		{"private_key_jwt without a key", func(c *Config) {
			c.OIDC.TokenAuthMethod, c.OIDC.ClientSecret = "private_key_jwt", ""
		}, "oidc.client_key_file (TH_OIDC_CLIENT_KEY_FILE) is required with oidc.token_auth_method private_key_jwt"},
		{"private_key_jwt with a secret as well", func(c *Config) {
			c.OIDC.TokenAuthMethod, c.OIDC.ClientKeyFile = "private_key_jwt", writeKey(t, josekey.EdDSA)
		}, "oidc.client_secret (TH_OIDC_CLIENT_SECRET) must be empty with oidc.token_auth_method private_key_jwt"},
		{"private_key_jwt with a bad key", func(c *Config) {
			c.OIDC.TokenAuthMethod, c.OIDC.ClientSecret, c.OIDC.ClientKeyFile = "private_key_jwt", "", bad
		}, "oidc.client_key_file (TH_OIDC_CLIENT_KEY_FILE) josekey: no PRIVATE KEY block"},
		{"a client key without private_key_jwt", func(c *Config) { c.OIDC.ClientKeyFile = writeKey(t, josekey.EdDSA) },
			`oidc.client_key_file (TH_OIDC_CLIENT_KEY_FILE) is set but oidc.token_auth_method is "client_secret_basic"`},
		{"dpop key RSA", func(c *Config) { c.OIDC.DPoP, c.DPoP.KeyFile = true, writeKey(t, josekey.RS256) },
			"dpop.key_file (TH_DPOP_KEY_FILE) holds a key that signs RS256"},
		{"dpop key ES256", func(c *Config) { c.OIDC.DPoP, c.DPoP.KeyFile = true, writeKey(t, josekey.ES256) }, ""},
		{"dpop without a key file", func(c *Config) { c.OIDC.DPoP = true }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(c)
			got := joined(c.Validate())
			if tc.want == "" {
				if len(got) != 0 {
					t.Errorf("Validate() = %q, want nil", got)
				}
				return
			}
			if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, tc.want) }) || len(got) != 1 {
				t.Errorf("Validate() = %q, want exactly %q", got, tc.want)
			}
		})
	}
	c := validConfig()
	c.OIDC.DPoP = true
	if !slices.ContainsFunc(c.Notes(), func(n string) bool { return strings.Contains(n, "one replica only") }) {
		t.Errorf("Notes() = %q, want the generated-key note", c.Notes())
	}
}
