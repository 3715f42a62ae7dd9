// Package config owns tokenhandler's configuration: the Config struct (plain values that
// mirror the YAML file key for key), Load (a YAML file, then TH_* environment overrides,
// then the *_file forms), Validate (every problem at once, each naming the key and its
// environment variable) and Notes (non-fatal remarks). Cookie keys are checked with
// session.ParseKeyPair, the one parser of the format `tokenhandler keygen` prints.
//
// It builds nothing: no provider, no client, no codec. cmd/tokenhandler, the only importer,
// translates a validated Config into the option structs of the other packages.
//
// # Environment
//
// Every key can be set by TH_ followed by its path in upper snake case:
// oidc.client_secret is TH_OIDC_CLIENT_SECRET, session.refresh_skew is
// TH_SESSION_REFRESH_SKEW, whether or not the key is in the file. The environment wins over
// the file. An empty variable counts as unset. Durations are Go duration strings ("30s",
// "500ms"); booleans are anything strconv.ParseBool accepts; lists of scalars are
// comma-separated (TH_OIDC_SCOPES=openid,profile); routes is a JSON array:
//
//	TH_ROUTES='[{"path":"/api/","upstream":"http://127.0.0.1:9000","strip_prefix":true,"methods":["GET"],"timeout":"5s"}]'
//
// An unknown TH_* variable is a warning that Load returns, not an error.
//
// # Secrets from files
//
// oidc.client_secret_file, cookies.keys_file and redis.url_file name files that Load reads
// (whitespace trimmed; in the keys file, one key pair a line, blank lines and lines starting
// with # ignored). Setting both a value and its _file form is a Validate error. The secret
// values have type Secret, which prints and logs as "[redacted]".
package config
