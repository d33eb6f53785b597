package gateway

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// DefaultAuthTimeout is how long a connection may stay unauthenticated
// by default (AuthConfig.Timeout).
const DefaultAuthTimeout = 30 * time.Second

// MaxTokenMessageSize bounds a token message ({"token":"<jwt>"}), in
// bytes: a client that must send its token first is closed with
// bus.CloseMessageTooLarge as soon as its first message's frame header
// says it is longer, a raw TCP client as soon as its first message has
// passed it (and a longer token message is refused at any time),
// so that an unauthenticated client pins no more than this, whatever
// MaxMessageSize is. Tokens in the upgrade request are bounded by
// MaxHeaderBytes.
const MaxTokenMessageSize = 64 << 10

// DefaultGroupsClaim is the token claim that lists the groups to join.
const DefaultGroupsClaim = "groups"

// Algorithms a gateway verifies tokens with.
const (
	AlgHS256 = "HS256"
	AlgRS256 = "RS256"
	AlgES256 = "ES256"
	AlgEdDSA = "EdDSA"
)

// ErrAuthConfig wraps every error of an AuthConfig that cannot work: a
// key file that does not parse, an algorithm without a key.
var ErrAuthConfig = errors.New("gateway: Auth")

// AuthConfig makes clients authenticate before they receive anything
// (docs/clients.md, "Tokens" and "Pending connections"). Set keys for
// connection tokens (JWT), or Pending for apps whose workers decide; the
// two exclude each other.
type AuthConfig struct {
	// Algorithms lists the JWT algorithms accepted: AlgHS256, AlgRS256,
	// AlgES256, AlgEdDSA. A token signed with any other ("none" included)
	// is refused, and each key verifies only its own algorithm, so an
	// RS256 public key is never taken for an HS256 secret. Empty means the
	// algorithms of the configured keys.
	Algorithms []string
	// HMACSecret is the HS256 secret; HMACSecretFile names a file that
	// holds it (its bytes, a final newline removed). At least 32 bytes.
	HMACSecret     []byte
	HMACSecretFile string
	// PublicKeyFiles name PEM files, each with a public key ("PUBLIC KEY",
	// "RSA PUBLIC KEY") or a certificate: RSA keys verify RS256, EC P-256
	// keys ES256, Ed25519 keys EdDSA.
	PublicKeyFiles []string
	// JWKSFile names a JSON Web Key Set (RFC 7517) of public keys; a token
	// whose header names a kid is verified with that key only.
	JWKSFile string
	// Issuer and Audience, when set, must be the token's iss and one of
	// its aud.
	Issuer, Audience string
	// GroupsClaim names the claim that lists the groups a client joins:
	// an array of strings, or one string. Empty means "groups".
	GroupsClaim string
	// Leeway is the clock skew allowed on exp and nbf. Zero means none.
	Leeway time.Duration
	// Pending makes each new connection pending until a worker accepts
	// (OpAccept) or rejects (OpReject) it: no broadcasts, groups or uid
	// meanwhile. It excludes keys.
	Pending bool
	// Timeout is how long a connection may go without a token (when the
	// first message must be one) or stay pending before it is closed with
	// bus.CloseUnauthorized. Zero means DefaultAuthTimeout (30s).
	Timeout time.Duration
}

// hasKeys reports whether a cannot work without verifying tokens.
func (a *AuthConfig) hasKeys() bool {
	return len(a.HMACSecret) > 0 || a.HMACSecretFile != "" || len(a.PublicKeyFiles) > 0 || a.JWKSFile != ""
}

// Check loads a's keys and reports what would keep a gateway from
// using them, as New does; for command lines that check before they
// connect.
func (a *AuthConfig) Check() error {
	_, err := newAuth(a)
	return err
}

// auth is a gateway's loaded AuthConfig.
type auth struct {
	timeout time.Duration
	pending bool
	// tokens is nil in pending mode.
	tokens *verifier
	// failures counts refusals by cause (authCause).
	failures [numAuthCauses]atomic.Uint64
}

func newAuth(a *AuthConfig) (*auth, error) {
	if a == nil {
		return nil, nil
	}
	out := &auth{timeout: a.Timeout, pending: a.Pending}
	if out.timeout == 0 {
		out.timeout = DefaultAuthTimeout
	}
	if out.timeout < 0 {
		return nil, fmt.Errorf("%w: Timeout must not be negative", ErrAuthConfig)
	}
	if a.Leeway < 0 {
		return nil, fmt.Errorf("%w: Leeway must not be negative", ErrAuthConfig)
	}
	switch {
	case a.Pending && a.hasKeys():
		return nil, fmt.Errorf("%w: Pending and token keys exclude each other (a valid token is already the decision)", ErrAuthConfig)
	case a.Pending:
		return out, nil
	case !a.hasKeys():
		return nil, fmt.Errorf("%w: set a key (HMACSecret, HMACSecretFile, PublicKeyFiles, JWKSFile) or Pending", ErrAuthConfig)
	}
	v, err := newVerifier(a)
	if err != nil {
		return nil, err
	}
	out.tokens = v
	return out, nil
}

// authCause is why a client was refused, for metrics.
type authCause uint8

const (
	causeMissing     authCause = iota // no token where one was required
	causeMalformed                    // not a token message, or not a JWT
	causeInvalid                      // bad signature, refused algorithm, unknown key
	causeExpired                      // exp passed (at connect, or while connected)
	causeNotYetValid                  // nbf not reached
	causeClaims                       // iss, aud, sub or groups wrong
	causeRejected                     // a worker rejected the pending client
	causeTimeout                      // no token, or no decision, within Timeout
	numAuthCauses
)

var authCauseNames = [numAuthCauses]string{
	"missing", "malformed", "invalid", "expired", "not_yet_valid", "claims", "rejected", "timeout",
}

// verifier checks tokens against the configured keys.
type verifier struct {
	parser      *jwt.Parser
	groupsClaim string
	leeway      time.Duration
	keys        []verifyKey
}

// verifyKey is one key and the one algorithm it verifies.
type verifyKey struct {
	alg, kid string
	key      any // []byte, *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey
}

func newVerifier(a *AuthConfig) (*verifier, error) {
	v := &verifier{groupsClaim: a.GroupsClaim, leeway: a.Leeway}
	if v.groupsClaim == "" {
		v.groupsClaim = DefaultGroupsClaim
	}
	secret := a.HMACSecret
	if a.HMACSecretFile != "" {
		if len(secret) > 0 {
			return nil, fmt.Errorf("%w: set HMACSecret or HMACSecretFile, not both", ErrAuthConfig)
		}
		b, err := os.ReadFile(a.HMACSecretFile)
		if err != nil {
			return nil, fmt.Errorf("%w: HMACSecretFile: %w", ErrAuthConfig, err)
		}
		secret = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	}
	if len(secret) > 0 {
		if len(secret) < 32 { // RFC 7518 §3.2: at least the hash's size
			return nil, fmt.Errorf("%w: the HS256 secret has %d bytes, at least 32 are needed", ErrAuthConfig, len(secret))
		}
		v.keys = append(v.keys, verifyKey{alg: AlgHS256, key: slices.Clone(secret)})
	}
	for _, f := range a.PublicKeyFiles {
		k, err := loadPublicKeyFile(f)
		if err != nil {
			return nil, fmt.Errorf("%w: PublicKeyFiles: %s: %w", ErrAuthConfig, f, err)
		}
		v.keys = append(v.keys, k)
	}
	if a.JWKSFile != "" {
		ks, err := loadJWKS(a.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("%w: JWKSFile: %s: %w", ErrAuthConfig, a.JWKSFile, err)
		}
		v.keys = append(v.keys, ks...)
	}
	have := map[string]bool{}
	for _, k := range v.keys {
		have[k.alg] = true
	}
	algs := a.Algorithms
	if len(algs) == 0 {
		for _, alg := range []string{AlgHS256, AlgRS256, AlgES256, AlgEdDSA} {
			if have[alg] {
				algs = append(algs, alg)
			}
		}
	}
	for _, alg := range algs {
		switch alg {
		case AlgHS256, AlgRS256, AlgES256, AlgEdDSA:
		default:
			return nil, fmt.Errorf("%w: algorithm %q: want HS256, RS256, ES256 or EdDSA", ErrAuthConfig, alg)
		}
		if !have[alg] {
			return nil, fmt.Errorf("%w: algorithm %s has no key", ErrAuthConfig, alg)
		}
	}
	// Keys of algorithms left out are never used.
	v.keys = slices.DeleteFunc(v.keys, func(k verifyKey) bool { return !slices.Contains(algs, k.alg) })
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(algs), jwt.WithExpirationRequired(), jwt.WithLeeway(a.Leeway),
	}
	if a.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.Issuer))
	}
	if a.Audience != "" {
		opts = append(opts, jwt.WithAudience(a.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// keyAlg is the one algorithm a public key verifies.
func keyAlg(k crypto.PublicKey) (string, error) {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("RSA key of %d bits: at least 2048 are needed", k.N.BitLen())
		}
		return AlgRS256, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("EC key on %s: ES256 needs P-256", k.Curve.Params().Name)
		}
		return AlgES256, nil
	case ed25519.PublicKey:
		return AlgEdDSA, nil
	}
	return "", fmt.Errorf("unsupported key type %T", k)
}

func loadPublicKeyFile(name string) (verifyKey, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return verifyKey{}, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return verifyKey{}, errors.New("no PEM block")
	}
	var k crypto.PublicKey
	switch block.Type {
	case "PUBLIC KEY":
		k, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		k, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			k = cert.PublicKey
		}
	default:
		return verifyKey{}, fmt.Errorf("PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE (never a private key)", block.Type)
	}
	if err != nil {
		return verifyKey{}, err
	}
	alg, err := keyAlg(k)
	if err != nil {
		return verifyKey{}, err
	}
	return verifyKey{alg: alg, key: k}, nil
}

func loadJWKS(name string) ([]verifyKey, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, err
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("no keys")
	}
	var out []verifyKey
	for i, jwk := range set.Keys {
		if !jwk.IsPublic() {
			return nil, fmt.Errorf("key %d (kid %q) is private or symmetric: a JWKS file holds public keys", i, jwk.KeyID)
		}
		alg, err := keyAlg(jwk.Key)
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %w", i, jwk.KeyID, err)
		}
		if jwk.Algorithm != "" && jwk.Algorithm != alg {
			return nil, fmt.Errorf("key %d (kid %q): alg %q does not fit its key (%s)", i, jwk.KeyID, jwk.Algorithm, alg)
		}
		out = append(out, verifyKey{alg: alg, kid: jwk.KeyID, key: jwk.Key})
	}
	return out, nil
}

// keyFor is the parser's key function: the keys of the token's algorithm
// (WithValidMethods has refused the others), narrowed to its kid if it
// names one.
func (v *verifier) keyFor(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	kid, _ := t.Header["kid"].(string)
	var set jwt.VerificationKeySet
	for _, k := range v.keys {
		if k.alg == alg && (kid == "" || k.kid == "" || k.kid == kid) {
			set.Keys = append(set.Keys, k.key)
		}
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no %s key with kid %q", alg, kid)
	}
	return set, nil
}

// identity is what a valid token says about its client.
type identity struct {
	sub    string
	groups []string
	// expires is exp plus the leeway.
	expires time.Time
}

// verify checks token and returns its identity, or why it is refused.
func (v *verifier) verify(token string) (identity, authCause, error) {
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, v.keyFor)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired):
		return identity{}, causeExpired, err
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return identity{}, causeNotYetValid, err
	case errors.Is(err, jwt.ErrTokenMalformed):
		return identity{}, causeMalformed, err
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience),
		errors.Is(err, jwt.ErrTokenRequiredClaimMissing), errors.Is(err, jwt.ErrTokenInvalidClaims) && !errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return identity{}, causeClaims, err
	default:
		return identity{}, causeInvalid, err
	}
	id := identity{}
	if id.sub, err = claims.GetSubject(); err != nil {
		return identity{}, causeClaims, err
	}
	if len(id.sub) > MaxNameLen {
		return identity{}, causeClaims, fmt.Errorf("sub of %d bytes: a uid has at most %d", len(id.sub), MaxNameLen)
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return identity{}, causeClaims, errors.New("no exp")
	}
	id.expires = exp.Add(v.leeway)
	switch g := claims[v.groupsClaim].(type) {
	case nil:
	case string:
		if len(g) > MaxNameLen {
			return identity{}, causeClaims, fmt.Errorf("claim %q: a group name of %d bytes, at most %d", v.groupsClaim, len(g), MaxNameLen)
		}
		if g != "" {
			id.groups = []string{g}
		}
	case []any:
		for _, x := range g {
			s, ok := x.(string)
			if !ok {
				return identity{}, causeClaims, fmt.Errorf("claim %q: not a list of strings", v.groupsClaim)
			}
			if len(s) > MaxNameLen {
				return identity{}, causeClaims, fmt.Errorf("claim %q: a group name of %d bytes, at most %d", v.groupsClaim, len(s), MaxNameLen)
			}
			if s != "" { // GatewayWorker ignores an empty group too
				id.groups = append(id.groups, s)
			}
		}
	default:
		return identity{}, causeClaims, fmt.Errorf("claim %q: not a list of strings", v.groupsClaim)
	}
	return id, 0, nil
}

// tokenPrefix starts every token message: {"token":"<jwt>"}.
var tokenPrefix = []byte(`{"token":"`)

// isTokenMessage reports whether msg is meant as a token message.
func isTokenMessage(msg []byte) bool { return bytes.HasPrefix(msg, tokenPrefix) }

// tokenOfMessage returns the token of a token message.
func tokenOfMessage(msg []byte) (string, bool) {
	var m struct {
		Token string `json:"token"`
	}
	d := json.NewDecoder(bytes.NewReader(msg))
	d.DisallowUnknownFields()
	if !isTokenMessage(msg) || d.Decode(&m) != nil || m.Token == "" || d.More() {
		return "", false
	}
	return m.Token, true
}

// tokenOfRequest returns the token of a WebSocket upgrade: ?token= first,
// then Authorization: Bearer.
func tokenOfRequest(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// refuse records cause and r for c, whose socket its caller closes.
func (g *Gateway) refuse(c *client, cause authCause, r bus.CloseReason, err error) {
	g.auth.failures[cause].Add(1)
	c.setReason(r)
	g.warnRateLimited("client refused", "client_id", c.id, "cause", authCauseNames[cause], "err", err)
}

// startClient announces a new client to workers, or, when the gateway
// requires authentication, does what comes first: verify the upgrade's
// token, or wait for the first message to be one, or mark it pending. evs
// are its connect events; with tokens they are held (copied) until the
// token came and NATS confirmed the subscriptions of its uid and groups,
// so that workers hear of the client only then, and a push to its uid or
// groups made by OnConnect reaches it.
func (g *Gateway) startClient(c *client, token string, evs ...bus.Event) {
	a := g.auth
	switch {
	case a == nil:
		g.pushEvent(c, evs...)
		return
	case a.tokens == nil: // pending mode
		g.armAuthTimer(c, a.timeout)
		g.pushEvent(c, evs...)
		return
	}
	held := make([]bus.Event, len(evs))
	for i, ev := range evs {
		held[i] = owned(ev)
	}
	c.mu.Lock()
	c.auth.holding, c.auth.held = true, held
	c.mu.Unlock()
	if token != "" {
		if !g.authenticate(c, token) {
			c.t.close(nil, c.closeReason())
		}
		return
	}
	c.awaiting.Store(true)
	g.armAuthTimer(c, a.timeout)
}

// armAuthTimer (re)starts c's auth timer to fire after d.
func (g *Gateway) armAuthTimer(c *client, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.auth.timer != nil {
		c.auth.timer.Stop()
	}
	c.auth.timer = time.AfterFunc(d, func() { g.onAuthTimer(c) })
}

// stopAuthTimer stops c's auth timer: it closed, or needs no timer now.
func stopAuthTimer(c *client) {
	c.mu.Lock()
	if c.auth != nil && c.auth.timer != nil {
		c.auth.timer.Stop()
		c.auth.timer = nil
	}
	c.mu.Unlock()
}

// onAuthTimer closes c if it is still unauthenticated, or if its token
// expired without a fresh one; a refresh that came meanwhile re-arms it.
func (g *Gateway) onAuthTimer(c *client) {
	if c.closing() {
		return
	}
	if c.awaiting.Load() || !g.reg.accepted(c) {
		g.refuse(c, causeTimeout, bus.CloseUnauthorized, errors.New("no token or decision within the auth timeout"))
		c.t.close(nil, c.closeReason())
		return
	}
	c.mu.Lock()
	left := time.Until(time.Unix(0, c.auth.expires))
	if c.auth.expires != 0 && left > 0 {
		c.auth.timer = time.AfterFunc(left, func() { g.onAuthTimer(c) })
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	g.refuse(c, causeExpired, bus.CloseTokenExpired, errors.New("token expired while connected"))
	c.t.close(nil, c.closeReason())
}

// verify checks token for c; a token it refuses is counted and recorded
// as c's close reason (4501 if it expired, else 4502).
func (g *Gateway) verify(c *client, token string) (identity, bool) {
	id, cause, err := g.auth.tokens.verify(token)
	if err != nil {
		r := bus.CloseUnauthorized
		if cause == causeExpired {
			r = bus.CloseTokenExpired
		}
		g.refuse(c, cause, r, err)
		return identity{}, false
	}
	return id, true
}

// authenticate verifies c's first token and gives c what it says: its
// uid, its groups, the end of its life; then it releases c's held events
// once the subscriptions of its uid and groups are confirmed. On failure
// it records why and returns false: the caller closes c.
func (g *Gateway) authenticate(c *client, token string) bool {
	id, ok := g.verify(c, token)
	if !ok {
		return false
	}
	if len(id.groups) > g.cfg.MaxGroupsPerClient {
		// Refused before joining any: thousands of names would each cost
		// a subscription, undone at once.
		g.refuse(c, causeClaims, bus.CloseUnauthorized, fmt.Errorf("groups: %d, MaxGroupsPerClient is %d", len(id.groups), g.cfg.MaxGroupsPerClient))
		return false
	}
	c.mu.Lock()
	c.auth.sub, c.auth.expires = id.sub, id.expires.UnixNano()
	c.mu.Unlock()
	g.reg.accept(c)
	if id.sub != "" {
		if rep := g.execOne(c, bus.Command{Op: bus.OpBindUID, Name: id.sub}); rep.Code != bus.ReplyOK {
			g.refuse(c, causeClaims, bus.CloseUnauthorized, fmt.Errorf("sub: %s", rep.Message))
			return false
		}
	}
	for _, group := range id.groups {
		if rep := g.execOne(c, bus.Command{Op: bus.OpJoinGroup, Name: group}); rep.Code != bus.ReplyOK {
			g.refuse(c, causeClaims, bus.CloseUnauthorized, fmt.Errorf("groups: %s", rep.Message))
			return false
		}
	}
	g.armAuthTimer(c, time.Until(id.expires))
	release := func() { g.push(c, true, nil) }
	if id.sub == "" && len(id.groups) == 0 {
		release()
	} else {
		g.afterSubscribed(release)
	}
	return true
}

// onTokenInput handles a message of c that is, or must be, a token
// message. It returns false when c must be closed (its reason recorded).
func (g *Gateway) onTokenInput(c *client, msg []byte) bool {
	if len(msg) > MaxTokenMessageSize {
		// A raw TCP client's, or a compressed one's: their frames did
		// not say it before it came. Parsed, it would cost more still.
		g.refuse(c, causeMalformed, bus.CloseMessageTooLarge, fmt.Errorf("a token message of %d bytes, at most %d", len(msg), MaxTokenMessageSize))
		return false
	}
	token, ok := tokenOfMessage(msg)
	if !ok {
		cause := causeMalformed
		if !isTokenMessage(msg) {
			cause = causeMissing
		}
		g.refuse(c, cause, bus.CloseUnauthorized, errors.New("the first message is not a token message"))
		return false
	}
	if c.awaiting.Load() {
		if !g.authenticate(c, token) {
			return false
		}
		c.awaiting.Store(false) // later messages wait, if need be, in c.auth.held
		return true
	}
	return g.refresh(c, token)
}

// refresh takes a fresh token for c: same sub, a new exp.
func (g *Gateway) refresh(c *client, token string) bool {
	id, ok := g.verify(c, token)
	if !ok {
		return false
	}
	c.mu.Lock()
	same := id.sub == c.auth.sub
	if same {
		c.auth.expires = id.expires.UnixNano()
	}
	c.mu.Unlock()
	if !same {
		g.refuse(c, causeClaims, bus.CloseUnauthorized, errors.New("a fresh token with another sub"))
		return false
	}
	g.armAuthTimer(c, time.Until(id.expires))
	return true
}

// AuthFailures returns how many clients were refused, by cause
// ("missing", "malformed", "invalid", "expired", "not_yet_valid",
// "claims", "rejected", "timeout"); nil without AuthConfig.
func (g *Gateway) authFailures() map[string]uint64 {
	if g.auth == nil {
		return nil
	}
	out := make(map[string]uint64, numAuthCauses)
	for i := range g.auth.failures {
		out[authCauseNames[i]] = g.auth.failures[i].Load()
	}
	return out
}
