package config

import (
	"os"
	"testing"
)

// FuzzLoadYAML: no YAML document, however hostile, makes decoding or validating panic.
func FuzzLoadYAML(f *testing.F) {
	if b, err := os.ReadFile("example.yaml"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"listen: :1\n",
		"oidc: {issuer: x, bogus: 1}\n",
		"routes: [{path: /a/, timeout: 5s}, 7, null]\n",
		"routes: {path: /a/}\n",
		"a: &a [*a, *a]\n",
		"x: &a {listen: ':1'}\n<<: *a\n",
		"session: {lifetime: 1h, refresh_skew: -1s}\n",
		"cookies: {keys: [':', 'a:b:c'], secure: maybe}\n",
		"---\n---\n",
		"!!binary aGVsbG8=\n",
		"redis: {url: 'redis://%zz'}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Default()
		if err := decodeYAML(data, cfg); err != nil {
			return
		}
		_ = cfg.Validate()
		_ = cfg.Notes()
		_ = cfg.RedirectURL()
	})
}
