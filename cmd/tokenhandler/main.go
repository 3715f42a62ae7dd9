// Command tokenhandler is a token handler (backend-for-frontend) for single-page apps: an
// OIDC client that keeps tokens in encrypted HttpOnly cookies or Redis, and a proxy that
// turns those cookies into Authorization: Bearer on API calls.
//
// Usage:
//
//	tokenhandler [serve] [--config FILE]    run (the default command)
//	tokenhandler check-config [--config FILE]
//	tokenhandler keygen                     print a fresh key pair for cookies.keys
//	tokenhandler keygen -client-key PS256   print a private_key_jwt key (its JWK on stderr)
//	tokenhandler keygen -dpop-key EdDSA     print a DPoP key
//	tokenhandler version
//
// The configuration is a YAML file and TH_* environment variables (see package config).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"github.com/tokenhandler/tokenhandler/config"
	"github.com/tokenhandler/tokenhandler/josekey"
	"github.com/tokenhandler/tokenhandler/metrics"
	"github.com/tokenhandler/tokenhandler/mint"
	"github.com/tokenhandler/tokenhandler/session"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second one kills at once instead of waiting for the
		// graceful shutdown.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Getenv, os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a command line the program does not understand: exit status 2.
type usageError struct {
	msg     string
	printed bool // the flag package already printed the problem and the usage
}

func (e *usageError) Error() string { return e.msg }

// exitCode reports err on stderr and returns the process's exit status: 0 for no error
// (or a help request), 2 for a usage error, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	var uerr *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &uerr):
		if !uerr.printed {
			fmt.Fprintf(stderr, "tokenhandler: %s\n\n", uerr.msg)
			printUsage(stderr)
		}
		return 2
	default:
		fmt.Fprintf(stderr, "tokenhandler: %v\n", err)
		return 1
	}
}

const usageText = `Usage: tokenhandler <command> [flags]

Commands:
  serve          run tokenhandler (the default command)
                   --config FILE   YAML configuration (default: none, environment only)
  check-config   load and validate the configuration; print every problem, or
                 "config OK" with notes and warnings
                   --config FILE
  keygen         print a fresh cookie key pair ("<hash key>:<block key>", base64)
                 for cookies.keys
                   -client-key ALG  instead, a PEM private key for oidc.client_key_file
                                    (PS256, RS256, ES256 or EdDSA); its public JWK, to
                                    register at the provider, goes to stderr
                   -dpop-key ALG    instead, a PEM private key for dpop.key_file
                                    (ES256 or EdDSA)
                   -public-jwk FILE instead, the public JWK of a PEM private key
  version        print the version
  help           print this help

Every configuration key can be set by an environment variable: TH_ + the key path in
upper snake case, e.g. oidc.client_secret is TH_OIDC_CLIENT_SECRET.
`

func printUsage(w io.Writer) { fmt.Fprint(w, usageText) }

// run is the whole program: it parses args, dispatches the command and returns its error.
// getenv and environ are os.Getenv and os.Environ outside tests.
func run(ctx context.Context, args []string, getenv func(string) string, environ []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		switch a := args[0]; {
		case a == "-h" || a == "-help" || a == "--help":
			printUsage(stdout)
			return nil
		case !strings.HasPrefix(a, "-"):
			cmd, args = a, args[1:]
		}
	}
	switch cmd {
	case "serve":
		return runServe(ctx, args, getenv, environ, stderr)
	case "check-config":
		return runCheckConfig(args, getenv, environ, stdout, stderr)
	case "keygen":
		return runKeygen(args, stdout, stderr)
	case "version":
		if err := parseFlags(flag.NewFlagSet("version", flag.ContinueOnError), args, stderr); err != nil {
			return err
		}
		_, err := fmt.Fprintf(stdout, "tokenhandler %s\n", versionString())
		return err
	case "help":
		printUsage(stdout)
		return nil
	default:
		return &usageError{msg: fmt.Sprintf("unknown command %q (commands: serve, check-config, keygen, version, help)", cmd)}
	}
}

// parseFlags parses a sub-command's flags and refuses positional arguments.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tokenhandler %s [flags]\n", fs.Name())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{msg: err.Error(), printed: true}
	}
	if fs.NArg() > 0 {
		return &usageError{msg: fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "YAML configuration `file` (default: none, environment variables only)")
}

// loadConfig loads and validates. On invalid configuration the error lists every problem,
// one a line.
func loadConfig(path string, getenv func(string) string, environ []string) (*config.Config, []string, error) {
	cfg, warnings, err := config.Load(path, getenv, environ)
	if err != nil {
		return nil, warnings, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, warnings, &invalidError{problems: problems(err)}
	}
	return cfg, warnings, nil
}

// invalidError is a configuration that does not validate.
type invalidError struct{ problems []string }

func (e *invalidError) Error() string {
	n := len(e.problems)
	s := "s"
	if n == 1 {
		s = ""
	}
	return fmt.Sprintf("invalid configuration (%d problem%s):\n%s", n, s, strings.Join(e.problems, "\n"))
}

// problems splits a Validate error (an errors.Join) into one string per problem.
func problems(err error) []string {
	var out []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, problems(e)...)
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}

// gcPercent is the GOGC tokenhandler runs with when the environment sets none, and
// softMemoryLimit the GOMEMLIMIT that goes with it unless the environment sets one.
const (
	gcPercent       = 400
	softMemoryLimit = 96 << 20
)

// tuneGC sets tokenhandler's garbage-collector defaults where the environment sets none,
// and reports them for the start-up log. tokenhandler's live heap is small and its
// garbage per request: collecting at 5x the live heap instead of 2x cut the CPU per
// proxied request by about 10 µs in BENCHMARKS.md's runs. Under a flood of connections
// the same setting lets garbage grow to several times the live heap (90-95 MiB of RSS in
// RELIABILITY.md's abuse drill, against 43 MiB at GOGC=100), so a soft memory limit
// makes the collector work harder only then. GOGC or GOMEMLIMIT in the environment win
// (the Helm chart sets GOMEMLIMIT from the container's memory limit).
func tuneGC(getenv func(string) string) (gogc int, memLimit int64) {
	gogc, memLimit = -1, -1
	if getenv("GOGC") == "" {
		gogc = gcPercent
		debug.SetGCPercent(gogc)
		if getenv("GOMEMLIMIT") == "" {
			memLimit = softMemoryLimit
			debug.SetMemoryLimit(memLimit)
		}
	}
	return gogc, memLimit
}

func runServe(ctx context.Context, args []string, getenv func(string) string, environ []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := configFlag(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	cfg, warnings, err := loadConfig(*path, getenv, environ)
	if err != nil {
		for _, w := range warnings {
			fmt.Fprintf(stderr, "tokenhandler: warning: %s\n", w)
		}
		return err
	}
	lw := newLogWriter(stderr)
	defer lw.Close()
	logger := newLogger(cfg.Log, lw)
	if gogc, limit := tuneGC(getenv); gogc > 0 {
		logger.Info("garbage collector tuned (GOGC and GOMEMLIMIT in the environment win)", "gogc", gogc, "memory_limit_bytes", limit)
	}
	for _, w := range warnings {
		logger.Warn(w)
	}
	for _, n := range cfg.Notes() {
		logger.Info(n)
	}
	logger.Info("starting tokenhandler", "version", versionString(), "config", *path)
	return serve(ctx, cfg, logger, nil)
}

func runCheckConfig(args []string, getenv func(string) string, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	path := configFlag(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	cfg, warnings, err := loadConfig(*path, getenv, environ)
	if err != nil {
		for _, w := range warnings { // with the problems, which exitCode prints on stderr
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.OIDC.HTTPTimeout)
	defer cancel()
	tokenWarnings, err := checkTokenPolicies(ctx, cfg, &http.Client{Timeout: cfg.OIDC.HTTPTimeout})
	if err != nil {
		return err
	}
	warnings = append(warnings, tokenWarnings...)
	fmt.Fprintln(stdout, "config OK")
	for _, n := range cfg.TokenNotes() {
		fmt.Fprintf(stdout, "token: %s\n", n)
	}
	for _, n := range cfg.Notes() {
		fmt.Fprintf(stdout, "note: %s\n", n)
	}
	for _, w := range warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	return nil
}

// runKeygen prints a cookie key pair, or with a flag a JOSE private key or a public JWK.
func runKeygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	clientKey := fs.String("client-key", "", "print a PEM private key for oidc.client_key_file: PS256, RS256, ES256 or EdDSA")
	dpopKey := fs.String("dpop-key", "", "print a PEM private key for dpop.key_file: ES256 or EdDSA")
	publicJWK := fs.String("public-jwk", "", "print the public JWK of this PEM private key file")
	signing := fs.String("signing", "", "print a PEM signing key for token_signing.keys: ec (P-256, ES256) or ed25519 (EdDSA)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	set := 0
	for _, v := range []string{*clientKey, *dpopKey, *publicJWK, *signing} {
		if v != "" {
			set++
		}
	}
	switch {
	case set > 1:
		return &usageError{msg: "keygen: give at most one of -client-key, -dpop-key, -public-jwk, -signing"}
	case *signing != "":
		return keygenSigning(stdout, *signing)
	case *clientKey != "":
		return keygenJOSE(*clientKey, []string{josekey.PS256, josekey.RS256, josekey.ES256, josekey.EdDSA}, stdout, stderr)
	case *dpopKey != "":
		return keygenJOSE(*dpopKey, []string{josekey.ES256, josekey.EdDSA}, stdout, nil)
	case *publicJWK != "":
		k, err := josekey.Load(*publicJWK)
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "%s\n", k.RegistrationJWK())
		return err
	}
	return keygen(stdout)
}

// keygenJOSE prints a fresh PEM private key for alg and, when jwkOut is set, its public
// JWK (with kid = the RFC 7638 thumbprint) there.
func keygenJOSE(alg string, allowed []string, stdout, jwkOut io.Writer) error {
	if !slices.Contains(allowed, alg) {
		return &usageError{msg: fmt.Sprintf("keygen: algorithm %q is not one of %s", alg, strings.Join(allowed, ", "))}
	}
	k, err := josekey.Generate(alg)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	b, err := k.PEM()
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if _, err := stdout.Write(b); err != nil {
		return err
	}
	if jwkOut != nil {
		_, err = fmt.Fprintf(jwkOut, "public JWK to register at the provider (kid = RFC 7638 thumbprint):\n%s\n", k.RegistrationJWK())
	}
	return err
}

// keygenSigning prints a new PEM private key for token_signing.keys.
func keygenSigning(stdout io.Writer, kind string) error {
	pemKey, err := mint.GenerateKey(kind)
	if err != nil {
		return &usageError{msg: fmt.Sprintf("keygen --signing: %v", err)}
	}
	_, err = stdout.Write(pemKey)
	return err
}

// keygen prints a fresh key pair in the form session.ParseKeyPair reads (the parser
// config validation and start-up use).
// keygen prints a fresh key pair in the form session.ParseKeyPair reads (the parser
// config validation and start-up use).
func keygen(stdout io.Writer) error {
	kp, err := session.GenerateKeyPair()
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	key := kp.Reveal()
	if _, err := session.ParseKeyPair(key); err != nil {
		return fmt.Errorf("keygen: %w", err) // impossible unless the two halves collide
	}
	_, err = fmt.Fprintln(stdout, key)
	return err
}

// versionString is the -ldflags version (or the module version of go install), the VCS
// revision when the build recorded one, and the Go version.
func versionString() string {
	v := version
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " (" + rev + dirty + ")"
	}
	return v + " " + bi.GoVersion
}

// newLogger is the process's logger: JSON (or text) on stderr at the configured level.
func newLogger(l config.Log, stderr io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil {
		level = slog.LevelInfo // Validate has refused it already
	}
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "text" {
		return slog.New(slog.NewTextHandler(stderr, opts))
	}
	// slog's JSON handler, through which the per-request line is written without
	// reflection (the same bytes).
	return slog.New(metrics.NewJSONHandler(stderr, opts))
}
