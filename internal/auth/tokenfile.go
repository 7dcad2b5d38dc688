package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// TokenPrefix starts every static token, so a leaked one is recognisable by secret scanners
// and is never mistaken for a JWT.
const TokenPrefix = "flt_"

// JoinTokenPrefix starts every agent join token (internal/enroll); log redaction knows it too.
const JoinTokenPrefix = "fjt_"

// ErrInvalidToken is returned for any token that does not authenticate. Its message never
// contains the token or why a particular token failed beyond a coarse reason.
var ErrInvalidToken = errors.New("invalid token")

// TokenFile is the YAML format of the static token file. It holds the SHA-256 of each token,
// never the token itself, so reading the file does not let anyone call the API.
type TokenFile struct {
	Tokens []TokenEntry `yaml:"tokens"`
}

// TokenEntry is one static token.
type TokenEntry struct {
	Name string `yaml:"name"`
	// SHA256 is the lower-case hex SHA-256 of the whole token string.
	SHA256 string   `yaml:"sha256"`
	Scopes []string `yaml:"scopes"`
	// Expires, when set, is when the token stops working.
	Expires *time.Time `yaml:"expires,omitempty"`
}

// GenerateToken returns a new random static token (256 bits) and its entry for the token file.
func GenerateToken(name string, scopes []string, expires *time.Time) (token string, entry TokenEntry, err error) {
	if err := checkEntry(TokenEntry{Name: name, SHA256: strings.Repeat("0", 64), Scopes: scopes}); err != nil {
		return "", TokenEntry{}, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", TokenEntry{}, fmt.Errorf("token %s: %w", name, err)
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, TokenEntry{Name: name, SHA256: HashToken(token), Scopes: scopes, Expires: expires}, nil
}

// HashToken returns the hex SHA-256 the token file stores for token. A plain hash suffices:
// tokens are 256-bit random strings, not passwords, so there is nothing to brute-force.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func checkEntry(e TokenEntry) error {
	if e.Name == "" {
		return errors.New("token entry without a name")
	}
	if len(e.SHA256) != 64 {
		return fmt.Errorf("token %q: sha256 must be 64 hex digits", e.Name)
	}
	if _, err := hex.DecodeString(e.SHA256); err != nil {
		return fmt.Errorf("token %q: sha256: %w", e.Name, err)
	}
	if len(e.Scopes) == 0 {
		return fmt.Errorf("token %q: no scopes", e.Name)
	}
	for _, s := range e.Scopes {
		if !ValidScope(s) {
			return fmt.Errorf("token %q: unknown scope %q (known: %s)", e.Name, s, strings.Join(KnownScopes, ", "))
		}
	}
	return nil
}

// ParseTokenFile parses and checks a token file.
func ParseTokenFile(data []byte) (*TokenFile, error) {
	var f TokenFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) { // empty file: no tokens
		return nil, fmt.Errorf("token file: %w", err)
	}
	names := map[string]bool{}
	hashes := map[string]bool{}
	for _, e := range f.Tokens {
		if err := checkEntry(e); err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		h := strings.ToLower(e.SHA256)
		if names[e.Name] || hashes[h] {
			return nil, fmt.Errorf("token file: token %q: duplicate name or hash", e.Name)
		}
		names[e.Name], hashes[h] = true, true
	}
	return &f, nil
}

// StaticTokens authenticates static tokens from a token file, re-reading it when it changes so
// tokens are added and removed without a restart.
type StaticTokens struct {
	path string
	now  func() time.Time

	mu      sync.Mutex
	modTime time.Time
	size    int64
	byHash  map[string]TokenEntry
}

// NewStaticTokens loads the token file at path. now is the clock (nil: time.Now).
func NewStaticTokens(path string, now func() time.Time) (*StaticTokens, error) {
	if now == nil {
		now = time.Now
	}
	s := &StaticTokens{path: path, now: now}
	if err := s.reload(true); err != nil {
		return nil, err
	}
	return s, nil
}

// reload re-reads the file when its size or modification time changed. A file that became
// unreadable or invalid keeps the last good set (and the error is returned to be logged),
// rather than locking every client out or letting everyone in.
func (s *StaticTokens) reload(force bool) error {
	fi, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("token file %s: %w", s.path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !force && fi.ModTime().Equal(s.modTime) && fi.Size() == s.size {
		return nil
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("token file %s: %w", s.path, err)
	}
	f, err := ParseTokenFile(data)
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	m := make(map[string]TokenEntry, len(f.Tokens))
	for _, e := range f.Tokens {
		m[strings.ToLower(e.SHA256)] = e
	}
	s.byHash, s.modTime, s.size = m, fi.ModTime(), fi.Size()
	return nil
}

// Authenticate returns the identity of a static token.
func (s *StaticTokens) Authenticate(token string) (Identity, error) {
	_ = s.reload(false) // a broken edit keeps the previous tokens; see reload
	if !strings.HasPrefix(token, TokenPrefix) || len(token) > 256 {
		return Identity{}, ErrInvalidToken
	}
	h := HashToken(token)
	s.mu.Lock()
	e, ok := s.byHash[h]
	s.mu.Unlock()
	if !ok {
		return Identity{}, ErrInvalidToken
	}
	if e.Expires != nil && !s.now().Before(*e.Expires) {
		return Identity{}, fmt.Errorf("%w: expired", ErrInvalidToken)
	}
	return Identity{Name: e.Name, Scopes: append([]string(nil), e.Scopes...)}, nil
}

// MarshalEntry renders one entry as a YAML list item ("- name: ...") to append under the
// token file's "tokens:" key.
func MarshalEntry(e TokenEntry) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode([]TokenEntry{e}); err != nil {
		return nil, fmt.Errorf("token %s: %w", e.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("token %s: %w", e.Name, err)
	}
	return b.Bytes(), nil
}
