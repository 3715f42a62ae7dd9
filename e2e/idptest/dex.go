package idptest

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"path/filepath"
)

// startDex writes Dex's configuration and starts `dex serve`.
func (p *Provider) startDex(ctx context.Context, logPath string) (launched, error) {
	ports, err := freePorts(1)
	if err != nil {
		return launched{}, err
	}
	public := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	reuse := "0s"
	if p.opts.ReuseInterval != nil {
		reuse = duration(*p.opts.ReuseInterval)
	}
	expiry := map[string]any{"refreshTokens": map[string]any{"reuseInterval": reuse}}
	if p.opts.AccessTokenTTL > 0 {
		expiry["idTokens"] = duration(p.opts.AccessTokenTTL) // also the access-token lifetime
	}
	client := map[string]any{
		"id":           p.ClientID,
		"secret":       p.ClientSecret,
		"name":         "tokenhandler",
		"redirectURIs": []string{p.opts.RedirectURL},
	}
	if p.opts.PostLogoutRedirectURL != "" {
		client["postLogoutRedirectURIs"] = []string{p.opts.PostLogoutRedirectURL}
	}
	if p.opts.BackchannelLogoutURL != "" {
		client["backchannelLogoutURI"] = p.opts.BackchannelLogoutURL
	}
	cfg := map[string]any{
		// The issuer is the front proxy: discovery hands out endpoints behind it.
		"issuer":  p.Issuer,
		"storage": map[string]any{"type": "memory"},
		"web":     map[string]any{"http": fmt.Sprintf("127.0.0.1:%d", ports[0])},
		"logger":  map[string]any{"level": "info"},
		"expiry":  expiry,
		"oauth2": map[string]any{
			"skipApprovalScreen": true,
			"pkce":               map[string]any{"enforce": true},
		},
		"enablePasswordDB": true,
		"staticPasswords": []map[string]any{{
			"email":             demoEmail,
			"hash":              demoPasswordHash,
			"username":          demoUserID,
			"name":              demoName,
			"preferredUsername": demoUserID,
			"userID":            demoUserID,
		}},
		"staticClients": []map[string]any{client},
	}
	cfgPath := filepath.Join(p.dir, fmt.Sprintf("dex-%d.yaml", p.starts))
	if err := writeConfig(cfgPath, cfg); err != nil {
		return launched{}, err
	}
	// DEX_SESSIONS_ENABLED turns on end_session_endpoint (RP-initiated logout) and
	// back-channel logout.
	proc, err := startProcess(p.bin, []string{"serve", cfgPath}, baseEnv("DEX_SESSIONS_ENABLED=true"), logPath)
	if err != nil {
		return launched{}, err
	}
	if err := waitReady(ctx, proc, public+"/dex/.well-known/openid-configuration"); err != nil {
		return launched{}, err
	}
	u, _ := url.Parse(public)
	return launched{proc: proc, backend: u}, nil
}

// dexSubject is the sub claim Dex gives a user: the unpadded base64url of the protobuf
// message (1: user id, 2: connector id). Both are short, so each length is one byte.
func dexSubject(userID, connID string) string {
	b := []byte{0x0a, byte(len(userID))}
	b = append(b, userID...)
	b = append(b, 0x12, byte(len(connID)))
	b = append(b, connID...)
	return base64.RawURLEncoding.EncodeToString(b)
}
