package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// mountedKeys name files or directories the pod gets from volumes that are not secrets
// (extraVolumes); check-config looks for them.
var mountedKeys = []string{"redis.tls_ca_file", "static.dir"}

// productCheck runs `bin check-config` on the rendered configuration file. The files it
// names live in the pod, not here: each such key is pointed, through its TH_* variable
// (the environment wins over the file), at a stand-in of the right form.
func (m *manifest) productCheck(bin string) error {
	if m.cfgText == "" {
		return fmt.Errorf("check-config: no configuration file rendered")
	}
	dir, err := os.MkdirTemp("", "chartcheck-")
	if err != nil {
		return fmt.Errorf("check-config: %w", err)
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "tokenhandler.yaml")
	if err := os.WriteFile(cfg, []byte(m.cfgText), 0o600); err != nil {
		return fmt.Errorf("check-config: %w", err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	for _, k := range slices.Concat(fileKeys, mountedKeys) {
		v, ok := m.lookup(k)
		if !ok {
			continue
		}
		n := 1
		if l, isList := v.([]any); isList {
			n = len(l)
		}
		var paths []string
		for i := range n {
			content, err := standIn(k)
			if err != nil {
				return fmt.Errorf("check-config: %s: %w", k, err)
			}
			p := filepath.Join(dir, fmt.Sprintf("%s-%d", strings.ReplaceAll(k, ".", "-"), i))
			if k == "static.dir" {
				err = os.Mkdir(p, 0o700)
			} else {
				err = os.WriteFile(p, content, 0o600)
			}
			if err != nil {
				return fmt.Errorf("check-config: %w", err)
			}
			paths = append(paths, p)
		}
		env = append(env, "TH_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))+"="+strings.Join(paths, ","))
	}
	cmd := exec.Command(bin, "check-config", "--config", cfg)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("tokenhandler check-config refuses the rendered configuration (%v):\n%s\n--- tokenhandler.yaml:\n%s", err, out.String(), m.cfgText)
	}
	if !strings.Contains(out.String(), "config OK") {
		return fmt.Errorf("tokenhandler check-config said:\n%s", out.String())
	}
	return nil
}

// standIn returns a file of the form the key expects.
func standIn(key string) ([]byte, error) {
	switch key {
	case "oidc.client_secret_file":
		return []byte("stand-in-client-secret\n"), nil
	case "cookies.keys_file":
		b := make([]byte, 64)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		return []byte(base64.StdEncoding.EncodeToString(b[:32]) + ":" + base64.StdEncoding.EncodeToString(b[32:]) + "\n"), nil
	case "redis.url_file":
		return []byte("redis://redis.invalid:6379/0\n"), nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if key == "tls.cert_file" || key == "redis.tls_ca_file" {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "stand-in"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			DNSNames:     []string{"stand-in"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
