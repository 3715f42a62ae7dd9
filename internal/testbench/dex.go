package testbench

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// The demo user's password, the same for every harness and user, and its bcrypt hash
// (cost 10, computed offline: the main module has no bcrypt).
const (
	DemoPassword     = "alice-password"
	DemoPasswordHash = "$2a$10$4nKF60qOw0cOar8NS/uXve2fYfEVkauxhsy1jEOktvgrnV0Dkz02m"
)

// Dex is a Dex configuration: in-memory storage, the password database with static
// users, static clients, PKCE enforced, no approval screen.
type Dex struct {
	Issuer   string
	Listen   string // host:port of its HTTP listener
	LogLevel string // empty: info
	// IDTokenTTL is expiry.idTokens, which Dex also uses for access tokens. Zero: Dex's
	// default (24 h).
	IDTokenTTL time.Duration
	// ReuseInterval is expiry.refreshTokens.reuseInterval. Zero: "0s", strict rotation.
	ReuseInterval time.Duration
	Users         []DexUser
	Clients       []DexClient
}

// DexUser is a static password user, with DemoPasswordHash as its password.
type DexUser struct {
	ID, Email string
	Name      string // empty: none
	// PreferredUsername is its preferred_username claim; empty: none.
	PreferredUsername string
}

// DexClient is a static client.
type DexClient struct {
	ID, Secret, Name       string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string // empty: none
	BackchannelLogoutURI   string   // empty: no logout tokens
}

// Config is the configuration document.
func (d Dex) Config() map[string]any {
	expiry := map[string]any{"refreshTokens": map[string]any{"reuseInterval": Duration(d.ReuseInterval)}}
	if d.IDTokenTTL > 0 {
		expiry["idTokens"] = Duration(d.IDTokenTTL) // also the access-token lifetime
	}
	users := make([]map[string]any, len(d.Users))
	for i, u := range d.Users {
		m := map[string]any{"email": u.Email, "hash": DemoPasswordHash, "username": u.ID, "userID": u.ID}
		if u.Name != "" {
			m["name"] = u.Name
		}
		if u.PreferredUsername != "" {
			m["preferredUsername"] = u.PreferredUsername
		}
		users[i] = m
	}
	clients := make([]map[string]any, len(d.Clients))
	for i, c := range d.Clients {
		m := map[string]any{"id": c.ID, "secret": c.Secret, "name": c.Name, "redirectURIs": c.RedirectURIs}
		if len(c.PostLogoutRedirectURIs) > 0 {
			m["postLogoutRedirectURIs"] = c.PostLogoutRedirectURIs
		}
		if c.BackchannelLogoutURI != "" {
			m["backchannelLogoutURI"] = c.BackchannelLogoutURI
		}
		clients[i] = m
	}
	level := d.LogLevel
	if level == "" {
		level = "info"
	}
	return map[string]any{
		"issuer":  d.Issuer,
		"storage": map[string]any{"type": "memory"},
		"web":     map[string]any{"http": d.Listen},
		"logger":  map[string]any{"level": level},
		"expiry":  expiry,
		"oauth2": map[string]any{
			"skipApprovalScreen": true,
			"pkce":               map[string]any{"enforce": true},
		},
		"enablePasswordDB": true,
		"staticPasswords":  users,
		"staticClients":    clients,
	}
}

// DexEnv is the environment Dex needs besides BaseEnv: DEX_SESSIONS_ENABLED turns on
// end_session_endpoint (RP-initiated logout) and back-channel logout, and without it
// this Dex never answers a refresh-token grant.
const DexEnv = "DEX_SESSIONS_ENABLED=true"

// WriteConfig writes cfg as JSON, which Dex and Hydra read as YAML.
func WriteConfig(path string, cfg any) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("testbench: config: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("testbench: config: %w", err)
	}
	return nil
}

// Duration formats d as both providers parse it (Hydra's schema takes no fractions).
func Duration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
