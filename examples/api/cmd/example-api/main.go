// Command example-api runs tokenhandler's example upstream API (package
// examples/api): GET /claims answers with the Bearer token's claims and expiry.
//
//	example-api -listen 127.0.0.1:9000 -issuer http://localhost:5556/dex
//
// Every flag has an environment variable: EXAMPLE_API_LISTEN, EXAMPLE_API_ISSUER,
// EXAMPLE_API_DISCOVERY_URL, EXAMPLE_API_AUDIENCE, EXAMPLE_API_REQUIRE_DPOP,
// EXAMPLE_API_BASE_URL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokenhandler/tokenhandler/examples/api"
)

func main() {
	if err := run(os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "example-api:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string) error {
	fs := flag.NewFlagSet("example-api", flag.ContinueOnError)
	def := func(env, fallback string) string {
		if v := getenv(env); v != "" {
			return v
		}
		return fallback
	}
	listen := fs.String("listen", def("EXAMPLE_API_LISTEN", "127.0.0.1:9000"), "listen address (EXAMPLE_API_LISTEN)")
	issuer := fs.String("issuer", def("EXAMPLE_API_ISSUER", ""), "the provider's issuer, exactly as in the tokens' iss (EXAMPLE_API_ISSUER)")
	discovery := fs.String("discovery-url", def("EXAMPLE_API_DISCOVERY_URL", ""), "fetch discovery and keys from this base URL instead of the issuer, e.g. http://dex:5556/dex in Docker (EXAMPLE_API_DISCOVERY_URL)")
	audience := fs.String("audience", def("EXAMPLE_API_AUDIENCE", ""), "require this value in the token's aud; empty accepts any (EXAMPLE_API_AUDIENCE)")
	requireDPoP := fs.Bool("require-dpop", def("EXAMPLE_API_REQUIRE_DPOP", "") == "true", "accept only DPoP-bound tokens with a valid proof (EXAMPLE_API_REQUIRE_DPOP=true)")
	baseURL := fs.String("base-url", def("EXAMPLE_API_BASE_URL", ""), "scheme://host[:port] the API is reached at, for DPoP proofs' htu; empty: from the request (EXAMPLE_API_BASE_URL)")
	jwks := fs.String("jwks-url", def("EXAMPLE_API_JWKS_URL", ""), "verify against this key set without discovery, e.g. tokenhandler's http://localhost:8080/.well-known/jwks.json for a route with token.format jwt; -issuer is then tokenhandler's public_url (EXAMPLE_API_JWKS_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	h, err := api.New(api.Options{Issuer: *issuer, DiscoveryURL: *discovery, JWKSURL: *jwks, Audience: *audience, RequireDPoP: *requireDPoP, BaseURL: *baseURL, Logger: logger})
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("example api listening", "addr", *listen, "issuer", *issuer)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
