package ctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"gopkg.in/yaml.v3"

	"github.com/flasher-dev/flasher/internal/config"
)

// DefaultAddr is flasher-server's default gRPC listen address.
const DefaultAddr = "127.0.0.1:9090"

// globals are the flags every command accepts.
type globals struct {
	addr      string
	token     string
	tokenFile string
	ca        string
	insecure  bool
	config    string
	output    string
	timeout   time.Duration
	progress  string
}

// register adds the global flags to fs, bound to g, so they may appear before or after the
// command's name.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "addr", "", "server address host:port (env FLASHER_SERVER, config server; default "+DefaultAddr+")")
	fs.StringVar(&g.token, "token", "", "bearer token (env FLASHER_TOKEN, config token); prefer --token-file")
	fs.StringVar(&g.tokenFile, "token-file", "", "file holding the bearer token (config token_file)")
	fs.StringVar(&g.ca, "ca", "", "PEM file of the CA that signed the server's certificate; implies TLS (env FLASHER_CA, config ca)")
	fs.BoolVar(&g.insecure, "insecure", false, "plaintext gRPC without TLS (env FLASHER_INSECURE, config insecure); default: plaintext only to loopback addresses without --ca")
	fs.StringVar(&g.config, "config", "", "config file (default ~/.config/flasher/ctl.yaml)")
	fs.StringVar(&g.output, "o", "", "output format: table, json or yaml (config output)")
	fs.StringVar(&g.output, "output", "", "same as -o")
	fs.DurationVar(&g.timeout, "timeout", 30*time.Second, "deadline of each unary call")
	fs.StringVar(&g.progress, "progress", "auto", "live progress: auto (bars on a terminal, lines otherwise), bars or lines")
}

// fileConfig is the YAML config file.
type fileConfig struct {
	Server    string `yaml:"server"`
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	CA        string `yaml:"ca"`
	Insecure  *bool  `yaml:"insecure"`
	Output    string `yaml:"output"`
}

// Config is the resolved client configuration.
type Config struct {
	Addr  string
	Token string
	CA    string
	// Plaintext is true when the connection uses no TLS.
	Plaintext bool
	Output    string
}

// resolve applies config.Precedence, the order of every binary: flags > environment > config
// file > defaults. set holds the names of flags given on the command line.
func (g *globals) resolve(set map[string]bool, getenv func(string) string) (Config, error) {
	var fc fileConfig
	path, explicit := g.config, set["config"]
	if !explicit {
		if p := getenv("FLASHER_CTL_CONFIG"); p != "" {
			path, explicit = p, true
		} else if dir := getenv("XDG_CONFIG_HOME"); dir != "" {
			path = filepath.Join(dir, "flasher", "ctl.yaml")
		} else if home := getenv("HOME"); home != "" {
			path = filepath.Join(home, ".config", "flasher", "ctl.yaml")
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			if err := yaml.Unmarshal(b, &fc); err != nil {
				return Config{}, fmt.Errorf("config file %s: %w", path, err)
			}
			// Relative paths in the file are relative to the file, so it works from any directory.
			fc.CA = relTo(path, fc.CA)
			fc.TokenFile = relTo(path, fc.TokenFile)
		case explicit || !errors.Is(err, os.ErrNotExist):
			return Config{}, fmt.Errorf("config file: %w", err)
		}
	}

	// Every binary's one precedence (internal/config): flag, then environment, then file.
	pick := func(flagName, flagVal, env, fileVal, def string) string {
		var e string
		if env != "" {
			e = getenv(env)
		}
		return config.Resolve(config.Setting[string]{Value: flagVal, Set: set[flagName]},
			config.Setting[string]{Value: e, Set: e != ""}, config.Setting[string]{Value: fileVal, Set: fileVal != ""}, def)
	}
	c := Config{
		Addr:   pick("addr", g.addr, "FLASHER_SERVER", fc.Server, DefaultAddr),
		CA:     pick("ca", g.ca, "FLASHER_CA", fc.CA, ""),
		Output: pick("o", g.output, "", fc.Output, "table"),
	}
	if set["output"] {
		c.Output = g.output
	}
	switch c.Output {
	case "table", "json", "yaml":
	default:
		return Config{}, usagef("-o %q: want table, json or yaml", c.Output)
	}

	// Token: --token, --token-file, FLASHER_TOKEN, file token, file token_file.
	switch {
	case set["token"]:
		c.Token = g.token
	case set["token-file"]:
		t, err := readToken(g.tokenFile)
		if err != nil {
			return Config{}, err
		}
		c.Token = t
	case getenv("FLASHER_TOKEN") != "":
		c.Token = getenv("FLASHER_TOKEN")
	case fc.Token != "":
		c.Token = fc.Token
	case fc.TokenFile != "":
		t, err := readToken(fc.TokenFile)
		if err != nil {
			return Config{}, err
		}
		c.Token = t
	}

	// Transport: an explicit choice wins; otherwise TLS when a CA is configured or the server is
	// not on this machine, plaintext to a loopback address (flasher-server's default).
	var ins *bool
	switch {
	case set["insecure"]:
		ins = &g.insecure
	case getenv("FLASHER_INSECURE") != "":
		b, err := strconv.ParseBool(getenv("FLASHER_INSECURE"))
		if err != nil {
			return Config{}, usagef("FLASHER_INSECURE=%q: want true or false", getenv("FLASHER_INSECURE"))
		}
		ins = &b
	case fc.Insecure != nil:
		ins = fc.Insecure
	}
	if ins != nil {
		c.Plaintext = *ins
	} else {
		c.Plaintext = c.CA == "" && isLoopback(c.Addr)
	}
	if c.Plaintext && c.CA != "" && ins != nil {
		return Config{}, usagef("--insecure and --ca contradict each other: choose plaintext or TLS")
	}
	if c.Plaintext && c.Token != "" && !isLoopback(c.Addr) {
		// A bearer token sent in clear across a network is a leaked token.
		return Config{}, usagef("refusing to send a token over plaintext to %s: use TLS (--ca) or a loopback address", c.Addr)
	}
	return c, nil
}

func relTo(file, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	return filepath.Join(filepath.Dir(file), p)
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// isLoopback reports whether addr's host is a loopback IP or "localhost".
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearer sends `authorization: Bearer <token>` with every call.
type bearer struct {
	token      string
	requireTLS bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.requireTLS }

// dial opens a client connection as configured. grpc.NewClient connects lazily, so an
// unreachable server shows up as Unavailable on the first call.
func dial(c Config) (*grpc.ClientConn, error) {
	var opts []grpc.DialOption
	if c.Plaintext {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CA != "" {
			pem, err := os.ReadFile(c.CA)
			if err != nil {
				return nil, fmt.Errorf("CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %s: no PEM certificates", c.CA)
			}
			tc.RootCAs = pool
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	}
	if c.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: c.Token, requireTLS: !c.Plaintext}))
	}
	conn, err := grpc.NewClient(c.Addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", c.Addr, err)
	}
	return conn, nil
}
