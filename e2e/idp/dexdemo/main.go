// Command dexdemo is the Dex that ./run.sh starts for tokenhandler's demo: Dex's own
// server package (github.com/dexidp/dex/server, the same protocol code as `dex serve`)
// with in-memory storage, the local password database and static clients, and nothing
// else. No SQL, etcd or Kubernetes storage, no gRPC API, no telemetry listener, no cgo:
// a cold build compiles a fraction of cmd/dex, so a first ./run.sh is quick.
//
//	dexdemo serve CONFIG
//
// CONFIG is the YAML that `dex serve` reads, restricted to the keys the demo uses
// (examples/stack/dex.yaml.tmpl, examples/dex/dex.yaml); any other key is refused,
// never silently ignored. DEX_SESSIONS_ENABLED=true turns on Dex's sessions
// (end_session_endpoint, back-channel logout) as it does for dex. The tests use the
// full cmd/dex from e2e/idp/dex; this one is for the demo only.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	gosundheit "github.com/AppsFlyer/go-sundheit"
	"github.com/dexidp/dex/pkg/featureflags"
	"github.com/dexidp/dex/server"
	"github.com/dexidp/dex/server/authflow"
	"github.com/dexidp/dex/server/connectors"
	"github.com/dexidp/dex/server/session"
	"github.com/dexidp/dex/server/signer"
	"github.com/dexidp/dex/server/tokens"
	"github.com/dexidp/dex/storage"
	"github.com/dexidp/dex/storage/memory"
	"github.com/ghodss/yaml"
	"golang.org/x/crypto/bcrypt"
)

// config is the subset of Dex's configuration file that the demo uses.
type config struct {
	Issuer  string `json:"issuer"`
	Storage struct {
		Type string `json:"type"`
	} `json:"storage"`
	Web struct {
		HTTP string `json:"http"`
	} `json:"web"`
	Logger struct {
		Level  string `json:"level"`
		Format string `json:"format"`
	} `json:"logger"`
	Expiry struct {
		IDTokens      string `json:"idTokens"`
		RefreshTokens struct {
			DisableRotation   bool   `json:"disableRotation"`
			ReuseInterval     string `json:"reuseInterval"`
			ValidIfNotUsedFor string `json:"validIfNotUsedFor"`
			AbsoluteLifetime  string `json:"absoluteLifetime"`
		} `json:"refreshTokens"`
	} `json:"expiry"`
	OAuth2 struct {
		SkipApprovalScreen bool `json:"skipApprovalScreen"`
		PKCE               struct {
			Enforce bool `json:"enforce"`
		} `json:"pkce"`
	} `json:"oauth2"`
	EnablePasswordDB bool             `json:"enablePasswordDB"`
	StaticPasswords  []password       `json:"staticPasswords"`
	StaticClients    []storage.Client `json:"staticClients"`
}

// password is a static user; hash is a bcrypt string, as in Dex's file.
type password struct {
	Email             string `json:"email"`
	Hash              string `json:"hash"`
	Username          string `json:"username"`
	Name              string `json:"name"`
	PreferredUsername string `json:"preferredUsername"`
	UserID            string `json:"userID"`
}

func main() {
	if len(os.Args) != 3 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: dexdemo serve CONFIG")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "dexdemo:", err)
		os.Exit(1)
	}
}

func load(path string) (*config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("parse config %s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var c config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config %s (dexdemo knows only the keys the demo uses): %w", path, err)
	}
	switch {
	case c.Issuer == "":
		return nil, errors.New("config: issuer is required")
	case c.Storage.Type != "memory":
		return nil, fmt.Errorf("config: storage.type %q: dexdemo has memory storage only", c.Storage.Type)
	case c.Web.HTTP == "":
		return nil, errors.New("config: web.http is required")
	}
	return &c, nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(orDefault(level, "info"))); err != nil {
		return nil, fmt.Errorf("config: logger.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("config: logger.format %q: want text or json", format)
}

func serve(ctx context.Context, path string) error {
	c, err := load(path)
	if err != nil {
		return err
	}
	logger, err := newLogger(c.Logger.Level, c.Logger.Format)
	if err != nil {
		return err
	}

	var s storage.Storage = memory.New(logger)
	defer s.Close()
	for _, cl := range c.StaticClients {
		if cl.ID == "" || cl.Name == "" || (cl.Secret == "" && !cl.Public) {
			return fmt.Errorf("config: static client %q needs id, name and secret", cl.ID)
		}
	}
	s = storage.WithStaticClients(s, c.StaticClients)
	var passwords []storage.Password
	for _, p := range c.StaticPasswords {
		if _, err := bcrypt.Cost([]byte(p.Hash)); err != nil {
			return fmt.Errorf("config: static password of %q: the hash is not bcrypt: %w", p.Email, err)
		}
		passwords = append(passwords, storage.Password{
			Email: p.Email, Hash: []byte(p.Hash), Username: p.Username, Name: p.Name,
			PreferredUsername: p.PreferredUsername, UserID: p.UserID,
		})
	}
	s = storage.WithStaticPasswords(s, passwords, logger)
	var conns []storage.Connector
	if c.EnablePasswordDB {
		conns = append(conns, storage.Connector{ID: connectors.LocalConnector, Name: "Email", Type: connectors.LocalConnector})
	}
	s = storage.WithStaticConnectors(s, conns)

	now := func() time.Time { return time.Now().UTC() }
	idTokens := 24 * time.Hour // Dex's default
	if c.Expiry.IDTokens != "" {
		if idTokens, err = time.ParseDuration(c.Expiry.IDTokens); err != nil {
			return fmt.Errorf("config: expiry.idTokens: %w", err)
		}
	}
	sig, err := (&signer.LocalConfig{KeysRotationPeriod: "6h"}).Open(ctx, s, idTokens, now, logger)
	if err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	rt := c.Expiry.RefreshTokens
	policy, err := tokens.NewRefreshTokenPolicy(logger, rt.DisableRotation, rt.ValidIfNotUsedFor, rt.AbsoluteLifetime, rt.ReuseInterval)
	if err != nil {
		return fmt.Errorf("config: expiry.refreshTokens: %w", err)
	}
	sc := server.Config{
		Issuer:             c.Issuer,
		Storage:            s,
		SkipApprovalScreen: c.OAuth2.SkipApprovalScreen,
		PKCE:               authflow.PKCEConfig{Enforce: c.OAuth2.PKCE.Enforce},
		Logger:             logger,
		Now:                now,
		HealthChecker:      gosundheit.New(),
		Signer:             sig,
		IDTokensValidFor:   idTokens,
		RefreshTokenPolicy: policy,
	}
	if featureflags.SessionsEnabled.Enabled() {
		// cmd/dex's defaults when the file has no sessions section.
		sc.SessionConfig = &session.Config{
			CookieName: "dex_session", AbsoluteLifetime: 24 * time.Hour,
			ValidIfNotUsedFor: time.Hour, RememberMeCheckedByDefault: true,
		}
	}
	srv, err := server.NewServer(ctx, sc)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}

	ln, err := net.Listen("tcp", c.Web.HTTP)
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.Web.HTTP, err)
	}
	logger.Info("dexdemo listening", "address", c.Web.HTTP, "issuer", c.Issuer)
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
