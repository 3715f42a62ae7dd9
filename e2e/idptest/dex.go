package idptest

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// startDex writes Dex's configuration and starts `dex serve`.
func (p *Provider) startDex(ctx context.Context, logPath string) (launched, error) {
	port, err := testbench.FreePort()
	if err != nil {
		return launched{}, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := testbench.Dex{
		// The issuer is the front proxy: discovery hands out endpoints behind it.
		Issuer:     p.Issuer,
		Listen:     listen,
		IDTokenTTL: p.opts.AccessTokenTTL, // also the access-token lifetime
		Users: []testbench.DexUser{{
			ID: demoUserID, Email: demoEmail, Name: demoName, PreferredUsername: demoUserID,
		}},
		Clients: []testbench.DexClient{{
			ID: p.ClientID, Secret: p.ClientSecret, Name: "tokenhandler",
			RedirectURIs:         []string{p.opts.RedirectURL},
			BackchannelLogoutURI: p.opts.BackchannelLogoutURL,
		}},
	}
	if p.opts.ReuseInterval != nil {
		cfg.ReuseInterval = *p.opts.ReuseInterval
	}
	if p.opts.PostLogoutRedirectURL != "" {
		cfg.Clients[0].PostLogoutRedirectURIs = []string{p.opts.PostLogoutRedirectURL}
	}
	cfgPath := filepath.Join(p.dir, fmt.Sprintf("dex-%d.yaml", p.starts))
	if err := testbench.WriteConfig(cfgPath, cfg.Config()); err != nil {
		return launched{}, err
	}
	proc, err := testbench.Start(testbench.Spec{
		Name: "dex", Bin: p.bin, Args: []string{"serve", cfgPath},
		Env: testbench.BaseEnv(testbench.DexEnv), LogPath: logPath,
	})
	if err != nil {
		return launched{}, err
	}
	public := "http://" + listen
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
