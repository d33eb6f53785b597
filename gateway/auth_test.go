package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// authKeys are the keys of the auth tests: the gateway's, written to files,
// and others that sign what it must refuse.
type authKeys struct {
	secret                    []byte
	rsa, otherRSA             *rsa.PrivateKey
	ec                        *ecdsa.PrivateKey
	ed                        ed25519.PrivateKey
	rsaFile, jwks, secretFile string
}

var (
	keysOnce sync.Once
	keys     authKeys
)

// testKeys makes the keys once per process: RSA keys take a while.
func testKeys(t *testing.T) authKeys {
	t.Helper()
	keysOnce.Do(func() {
		k := authKeys{secret: []byte(strings.Repeat("s3cret!", 6))}
		var err error
		if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if k.otherRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		keys = k
	})
	k := keys
	dir := t.TempDir()
	der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	require.NoError(t, err)
	k.rsaFile = filepath.Join(dir, "rsa.pem")
	require.NoError(t, os.WriteFile(k.rsaFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600))
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &k.ec.PublicKey, KeyID: "ec1", Algorithm: "ES256", Use: "sig"},
		{Key: k.ed.Public(), KeyID: "ed1", Algorithm: "EdDSA", Use: "sig"},
	}}
	data, err := json.Marshal(set)
	require.NoError(t, err)
	k.jwks = filepath.Join(dir, "jwks.json")
	require.NoError(t, os.WriteFile(k.jwks, data, 0o600))
	k.secretFile = filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(k.secretFile, append(k.secret, '\n'), 0o600))
	return k
}

// authConfig accepts HS256 (the secret file), RS256 (rsa.pem) and ES256
// and EdDSA (the JWKS file).
func (k authKeys) authConfig() *gateway.AuthConfig {
	return &gateway.AuthConfig{HMACSecretFile: k.secretFile, PublicKeyFiles: []string{k.rsaFile}, JWKSFile: k.jwks}
}

// sign makes a token with claims, signed by key with method; kid goes
// into the header if not empty.
func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func claimsFor(sub string, exp time.Time, groups ...string) jwt.MapClaims {
	c := jwt.MapClaims{"sub": sub, "exp": exp.Unix()}
	if len(groups) > 0 {
		c["groups"] = groups
	}
	return c
}

// authStack is a gateway with cfg.Auth and a worker that greets each
// client with "<id> <uid>" (sent to its uid if it has one), accepts a pending client that says "let me
// in" (binding uid "u-"+its id), rejects one that says "no", and echoes
// the rest.
type authStack struct {
	gw       *gateway.Gateway
	api      *api.Client
	mu       sync.Mutex
	connects int
}

func startAuthStack(t *testing.T, cfg gateway.Config) *authStack {
	t.Helper()
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	s := &authStack{}
	workertest.Start(t, e, worker.Config{Handlers: worker.Handlers{
		OnConnect: func(ctx context.Context, c *worker.Client) error {
			s.mu.Lock()
			s.connects++
			s.mu.Unlock()
			greeting := []byte(c.ID() + " " + c.UID())
			if c.UID() != "" {
				// By uid: the gateway's subscription is there before OnConnect.
				return c.SendToUID(ctx, c.UID(), greeting)
			}
			return c.SendToCurrentClient(ctx, greeting)
		},
		OnMessage: func(ctx context.Context, c *worker.Client, m worker.MessageEvent) error {
			switch string(m.Data) {
			case "let me in":
				if err := c.AcceptClient(ctx, c.ID(), "u-"+c.ID()); err != nil {
					return err
				}
				return c.SendToCurrentClient(ctx, []byte("welcome"))
			case "no":
				return c.RejectClient(ctx, c.ID(), []byte("go away"))
			}
			return c.SendToCurrentClient(ctx, m.Data)
		},
	}})
	s.gw = gatewaytest.Start(t, e, cfg)
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{})})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	s.api = a
	return s
}

func (s *authStack) connectsSeen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connects
}

// dialAuth dials s's gateway with query (may be empty) and header.
func (s *authStack) dial(t *testing.T, query string, header http.Header) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: wait}
	c, _, err := d.Dial("ws://"+s.gw.WebSocketAddr()+"/"+query, header)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func readMsg(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, m, err := c.ReadMessage()
	require.NoError(t, err)
	return string(m)
}

func tokenMessage(tok string) []byte { return []byte(`{"token":"` + tok + `"}`) }

// TestBadTokensAreRefused: each bad token closes its client with 4502 or
// 4501, workers never hear of the client, and the refusal is counted by
// cause and by close reason.
func TestBadTokensAreRefused(t *testing.T) {
	k := testKeys(t)
	hour := time.Now().Add(time.Hour)
	rsaPEM, err := os.ReadFile(k.rsaFile)
	require.NoError(t, err)
	cfg := k.authConfig()
	cfg.Timeout = 300 * time.Millisecond
	s := startAuthStack(t, gateway.Config{Auth: cfg})
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claimsFor("ann", hour)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)

	for _, tc := range []struct {
		name  string
		query string
		first []byte // sent after connecting, when set
		cause string
		want  bus.CloseReason
	}{
		{name: "forged (another secret)", query: "?token=" + sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), "", claimsFor("ann", hour)),
			cause: "invalid", want: bus.CloseUnauthorized},
		{name: "tampered payload", query: "?token=" + tamper(sign(t, jwt.SigningMethodHS256, k.secret, "", claimsFor("ann", hour))),
			cause: "invalid", want: bus.CloseUnauthorized},
		{name: "alg none", query: "?token=" + none, cause: "invalid", want: bus.CloseUnauthorized},
		// The RSA public key, as the gateway has it, used as an HS256 secret.
		{name: "HS/RS confusion", query: "?token=" + sign(t, jwt.SigningMethodHS256, rsaPEM, "", claimsFor("ann", hour)),
			cause: "invalid", want: bus.CloseUnauthorized},
		{name: "wrong RSA key", query: "?token=" + sign(t, jwt.SigningMethodRS256, k.otherRSA, "", claimsFor("ann", hour)),
			cause: "invalid", want: bus.CloseUnauthorized},
		{name: "RS512 not configured", query: "?token=" + sign(t, jwt.SigningMethodRS512, k.rsa, "", claimsFor("ann", hour)),
			cause: "invalid", want: bus.CloseUnauthorized},
		{name: "ES256 with an unknown kid", query: "?token=" + sign(t, jwt.SigningMethodES256, k.ec, "nope", claimsFor("ann", hour)),
			cause: "invalid", want: bus.CloseUnauthorized},
		{name: "no exp", query: "?token=" + sign(t, jwt.SigningMethodHS256, k.secret, "", jwt.MapClaims{"sub": "ann"}),
			cause: "claims", want: bus.CloseUnauthorized},
		{name: "not yet valid", query: "?token=" + sign(t, jwt.SigningMethodHS256, k.secret, "", jwt.MapClaims{"sub": "ann", "exp": hour.Unix(), "nbf": hour.Add(-time.Minute).Unix()}),
			cause: "not_yet_valid", want: bus.CloseUnauthorized},
		{name: "garbage", query: "?token=abc.def.ghi", cause: "malformed", want: bus.CloseUnauthorized},
		{name: "expired", query: "?token=" + sign(t, jwt.SigningMethodHS256, k.secret, "", claimsFor("ann", time.Now().Add(-time.Minute))),
			cause: "expired", want: bus.CloseTokenExpired},
		{name: "expired, first message", first: tokenMessage(sign(t, jwt.SigningMethodRS256, k.rsa, "", claimsFor("ann", time.Now().Add(-time.Minute)))),
			cause: "expired", want: bus.CloseTokenExpired},
		{name: "first message not a token", first: []byte("hello"), cause: "missing", want: bus.CloseUnauthorized},
		{name: "token message with more keys", first: []byte(`{"token":"a.b.c","x":1}`), cause: "malformed", want: bus.CloseUnauthorized},
		{name: "no token in time", cause: "timeout", want: bus.CloseUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.gw.Stats()
			c := s.dial(t, tc.query, nil)
			if tc.first != nil {
				require.NoError(t, c.WriteMessage(websocket.TextMessage, tc.first))
			}
			code, text, msgs := readClose(t, c)
			require.Empty(t, msgs, "a refused client receives nothing")
			require.Equal(t, tc.want.WSCode(), code, text)
			require.Equal(t, tc.want.WSText(), text)
			require.Eventually(t, func() bool {
				st := s.gw.Stats()
				return st.AuthFailures[tc.cause] == before.AuthFailures[tc.cause]+1 && st.Closed[tc.want] == before.Closed[tc.want]+1
			}, wait, 10*time.Millisecond, "counted as %s / %v", tc.cause, tc.want)
		})
	}
	// A good client after them all: the worker works, and saw no refused one.
	c := s.dial(t, "?token="+sign(t, jwt.SigningMethodHS256, k.secret, "", claimsFor("ann", hour)), nil)
	require.True(t, strings.HasSuffix(readMsg(t, c), " ann"))
	require.Equal(t, 1, s.connectsSeen(), "workers heard of no refused client")
}

// tamper changes the token's payload and keeps its signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	claims := `{"sub":"root","exp":` + "9999999999" + `}`
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(claims))
	return strings.Join(parts, ".")
}

// TestTokenPlacesAndWhatTheyGive: a token in the query, the Authorization
// header or the first message lets the client in, of each algorithm; sub
// is its uid before OnConnect runs, and it is in the groups of its claim.
func TestTokenPlacesAndWhatTheyGive(t *testing.T) {
	k := testKeys(t)
	s := startAuthStack(t, gateway.Config{Auth: k.authConfig()})
	hour := time.Now().Add(time.Hour)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		method jwt.SigningMethod
		key    any
		kid    string
		place  string
	}{
		{"HS256 in the query", jwt.SigningMethodHS256, k.secret, "", "query"},
		{"RS256 in the header", jwt.SigningMethodRS256, k.rsa, "", "header"},
		{"ES256 (JWKS, kid) in the first message", jwt.SigningMethodES256, k.ec, "ec1", "first"},
		{"EdDSA (JWKS, no kid) in the query", jwt.SigningMethodEdDSA, k.ed, "", "query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := strings.ReplaceAll(tc.name[:5], " ", "")
			tok := sign(t, tc.method, tc.key, tc.kid, claimsFor(sub, hour, "room-"+sub, "all"))
			var c *websocket.Conn
			switch tc.place {
			case "query":
				c = s.dial(t, "?token="+tok, nil)
			case "header":
				c = s.dial(t, "", http.Header{"Authorization": {"Bearer " + tok}})
			case "first":
				c = s.dial(t, "", nil)
				require.NoError(t, c.WriteMessage(websocket.TextMessage, tokenMessage(tok)))
			}
			greeting := strings.Fields(readMsg(t, c))
			require.Equal(t, []string{greeting[0], sub}, greeting, "OnConnect sees sub as the uid")
			id := greeting[0]
			uid, err := s.api.GetUIDByClientID(ctx, id)
			require.NoError(t, err)
			require.Equal(t, sub, uid)
			members, err := s.api.GetClientIDListByGroup(ctx, "room-"+sub)
			require.NoError(t, err)
			require.Equal(t, []string{id}, members, "the groups claim was joined")
			// Workers heard of the client once its subscriptions were
			// confirmed: the greeting came by uid, and a group push too.
			require.NoError(t, s.api.SendToUID(ctx, sub, []byte("to uid")))
			require.Equal(t, "to uid", readMsg(t, c))
			require.NoError(t, s.api.SendToGroup(ctx, "room-"+sub, []byte("to group")))
			require.Equal(t, "to group", readMsg(t, c))
		})
	}
	t.Run("raw TCP, first line", func(t *testing.T) {
		c := gatewaytest.DialTCP(t, s.gw)
		c.Send("hello") // not a token: refused, the socket just closes
		require.Error(t, c.Closed(wait))
		c = gatewaytest.DialTCP(t, s.gw)
		c.Send(string(tokenMessage(sign(t, jwt.SigningMethodHS256, k.secret, "", claimsFor("tcp", hour)))))
		require.True(t, strings.HasSuffix(c.Read(wait), " tcp"))
	})
}

// TestTokenExpiryAndRefresh: a client whose token expires is closed with
// 4501; one that sent a fresh token before stays, and the fresh token
// message never reaches workers.
func TestTokenExpiryAndRefresh(t *testing.T) {
	k := testKeys(t)
	s := startAuthStack(t, gateway.Config{Auth: k.authConfig()})
	soon := time.Now().Add(2 * time.Second) // exp has whole seconds: 1 to 2 s from now
	expiring := s.dial(t, "?token="+sign(t, jwt.SigningMethodHS256, k.secret, "", claimsFor("ann", soon)), nil)
	refreshed := s.dial(t, "?token="+sign(t, jwt.SigningMethodHS256, k.secret, "", claimsFor("bob", soon)), nil)
	readMsg(t, expiring)
	readMsg(t, refreshed)
	fresh := sign(t, jwt.SigningMethodHS256, k.secret, "", claimsFor("bob", time.Now().Add(time.Hour)))
	require.NoError(t, refreshed.WriteMessage(websocket.TextMessage, tokenMessage(fresh)))
	require.NoError(t, refreshed.WriteMessage(websocket.TextMessage, []byte("echo")))
	require.Equal(t, "echo", readMsg(t, refreshed), "the token message was not echoed: workers never saw it")

	code, text, _ := readClose(t, expiring)
	require.Equal(t, 4501, code)
	require.Equal(t, "token expired", text)
	// The refreshed client outlived the expiry it had.
	require.NoError(t, refreshed.WriteMessage(websocket.TextMessage, []byte("still here")))
	require.Equal(t, "still here", readMsg(t, refreshed))

	// A fresh token for another sub is refused.
	other := sign(t, jwt.SigningMethodHS256, k.secret, "", claimsFor("eve", time.Now().Add(time.Hour)))
	require.NoError(t, refreshed.WriteMessage(websocket.TextMessage, tokenMessage(other)))
	code, _, _ = readClose(t, refreshed)
	require.Equal(t, 4502, code)
}

// TestPendingClients: a pending client receives nothing of a broadcast
// sent before a worker accepts it, and what is sent after; accept binds
// its uid; reject closes with 4502 after the last message; a client
// pending too long is closed with 4502.
func TestPendingClients(t *testing.T) {
	s := startAuthStack(t, gateway.Config{Auth: &gateway.AuthConfig{Pending: true, Timeout: 2 * time.Second}})
	ctx := context.Background()

	insider := s.dial(t, "", nil)
	insiderID := strings.Fields(readMsg(t, insider))[0]
	require.NoError(t, insider.WriteMessage(websocket.TextMessage, []byte("let me in")))
	require.Equal(t, "welcome", readMsg(t, insider))

	pending := s.dial(t, "", nil)
	pendingID := strings.Fields(readMsg(t, pending))[0] // sends by id reach it
	require.ErrorContains(t, s.api.JoinGroup(ctx, pendingID, "room"), "not accepted yet")
	require.ErrorContains(t, s.api.BindUID(ctx, pendingID, "mallory"), "not accepted yet")

	require.NoError(t, s.api.SendToAll(ctx, []byte("before accept")))
	require.Equal(t, "before accept", readMsg(t, insider)) // the gateway has handled it
	require.NoError(t, pending.WriteMessage(websocket.TextMessage, []byte("let me in")))
	require.Equal(t, "welcome", readMsg(t, pending), "nothing of the broadcast before the accept")
	require.NoError(t, s.api.SendToAll(ctx, []byte("after accept")))
	require.Equal(t, "after accept", readMsg(t, pending))
	require.NoError(t, s.api.SendToUID(ctx, "u-"+pendingID, []byte("to uid")))
	require.Equal(t, "to uid", readMsg(t, pending), "accept bound the uid")
	require.NoError(t, s.api.JoinGroup(ctx, pendingID, "room"))
	require.NotEqual(t, insiderID, pendingID)

	rejected := s.dial(t, "", nil)
	readMsg(t, rejected)
	require.NoError(t, rejected.WriteMessage(websocket.TextMessage, []byte("no")))
	code, text, msgs := readClose(t, rejected)
	require.Equal(t, 4502, code)
	require.Equal(t, "unauthorized", text)
	require.Equal(t, []string{"go away"}, msgs)

	idle := s.dial(t, "", nil)
	readMsg(t, idle)
	code, _, _ = readClose(t, idle)
	require.Equal(t, 4502, code, "pending past the auth timeout")
	require.Eventually(t, func() bool {
		st := s.gw.Stats()
		return st.AuthFailures["rejected"] == 1 && st.AuthFailures["timeout"] == 1
	}, wait, 10*time.Millisecond)
}

// TestAuthConfigErrors: an AuthConfig that cannot work is refused by New
// with the reason.
func TestAuthConfigErrors(t *testing.T) {
	k := testKeys(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not a key"), 0o600))
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("tooshort"), 0o600))
	for _, tc := range []struct {
		auth gateway.AuthConfig
		want string
	}{
		{gateway.AuthConfig{}, "set a key"},
		{gateway.AuthConfig{PublicKeyFiles: []string{garbage}}, "garbage.pem: no PEM block"},
		{gateway.AuthConfig{PublicKeyFiles: []string{filepath.Join(dir, "missing.pem")}}, "no such file"},
		{gateway.AuthConfig{HMACSecretFile: short}, "at least 32"},
		{gateway.AuthConfig{JWKSFile: garbage}, "JWKSFile"},
		{gateway.AuthConfig{PublicKeyFiles: []string{k.rsaFile}, Algorithms: []string{"HS256"}}, "HS256 has no key"},
		{gateway.AuthConfig{PublicKeyFiles: []string{k.rsaFile}, Algorithms: []string{"none"}}, `algorithm "none"`},
		{gateway.AuthConfig{PublicKeyFiles: []string{k.rsaFile}, Pending: true}, "exclude each other"},
	} {
		auth := tc.auth
		require.ErrorIs(t, auth.Check(), gateway.ErrAuthConfig)
		_, err := gateway.New(gateway.Config{Bus: &bus.Conn{}, WebSocketAddr: "127.0.0.1:0", Auth: &auth})
		require.ErrorContains(t, err, tc.want)
	}
}

// TestNoTokenNoBroadcasts: a client that has not sent its token yet gets
// no broadcast, and a worker or API cannot accept it in place of a token.
func TestNoTokenNoBroadcasts(t *testing.T) {
	k := testKeys(t)
	s := startAuthStack(t, gateway.Config{Auth: k.authConfig()})
	ctx := context.Background()
	c := s.dial(t, "", nil)
	var ids []string
	require.Eventually(t, func() bool {
		ids, _ = s.api.GetAllClientIDList(ctx)
		return len(ids) == 1
	}, wait, 10*time.Millisecond)
	require.ErrorContains(t, s.api.AcceptClient(ctx, ids[0], ""), "has not sent its token")
	require.NoError(t, s.api.SendToAll(ctx, []byte("broadcast")))
	// A second client, with a token, proves the gateway handled the broadcast.
	witness := s.dial(t, "?token="+sign(t, jwt.SigningMethodHS256, k.secret, "", claimsFor("wit", time.Now().Add(time.Hour))), nil)
	readMsg(t, witness)
	require.NoError(t, s.api.SendToAll(ctx, []byte("second")))
	require.Equal(t, "second", readMsg(t, witness))

	require.NoError(t, c.WriteMessage(websocket.TextMessage, tokenMessage(sign(t, jwt.SigningMethodHS256, k.secret, "", claimsFor("late", time.Now().Add(time.Hour))))))
	require.Equal(t, ids[0]+" late", readMsg(t, c), "the greeting comes first: no broadcast before the token")
}
