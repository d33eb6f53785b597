package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/pkg/httpapi"
)

// minKeyBytes is the shortest API key accepted beyond loopback: 16 random
// bytes are out of reach of guessing at AuthFailureBurst per address.
const minKeyBytes = 16

// runAPI serves the HTTP API (pkg/httpapi) against an external NATS until
// ctx ends: pushes and queries from any language, with API keys.
func runAPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		n       natsFlags
		l       logFlags
		listen  string
		keys    string
		maxBody int
		recover string
	)
	c := newCLI("api", "gatewayworker api: the HTTP API for pushes and queries from any language (docs/http-api.md).")
	n.register(c, false)
	c.group("HTTP API")
	c.str(&listen, "listen", "127.0.0.1:8081", "address of the HTTP API; without --keys it must be a loopback address")
	c.str(&keys, "keys", "", "accepted API keys, comma-separated (prefer the environment variable: the command line is visible to other users); empty: no authentication, loopback only")
	c.int(&maxBody, "max-body", httpapi.DefaultMaxBodyBytes, "largest request body in bytes, a batch's included")
	recoverableFlag(c, &recover)
	l.register(c)
	log, err := parseWithLogger(c, &l, args, stdout, stderr)
	if err != nil {
		return err
	}
	keyList := splitList(keys)
	if maxBody <= 0 {
		return fmt.Errorf("--max-body %d: want a positive number of bytes", maxBody)
	}
	if !loopbackAddr(listen) {
		for i, k := range keyList {
			if len(k) < minKeyBytes {
				return fmt.Errorf("--keys: key %d is %d bytes; beyond loopback every key must have at least %d (openssl rand -hex 16 makes one)", i+1, len(k), minKeyBytes)
			}
		}
	}
	if len(keyList) == 0 {
		if !loopbackAddr(listen) {
			return fmt.Errorf("--listen %s without --keys: anyone who reaches that address could push to and close every client; set --keys (or GW_KEYS) or listen on 127.0.0.1", listen)
		}
		log.Warn("HTTP API without authentication: it listens on loopback only and refuses other Host names; set --keys (or GW_KEYS) to require an API key", "listen", listen)
	}

	b, err := connectBus(ctx, &n, nil, bus.RoleAPI, log)
	if err != nil {
		return err
	}
	defer b.Close()
	a, err := api.New(api.Config{Bus: b, Prefix: n.prefix, Logger: log, Recoverable: splitList(recover)})
	if err != nil {
		return err
	}
	defer a.Close()
	h, err := httpapi.New(httpapi.Config{API: a, Keys: keyList, MaxBodyBytes: int64(maxBody), Logger: log})
	if err != nil {
		return err
	}
	if len(keyList) == 0 {
		h = loopbackHostOnly(h)
	}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return listenError(err, "listen", listen)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	addr := ln.Addr().String()
	l.announce(stdout, log, fmt.Sprintf("gatewayworker api: http://%s/v1/ (OpenAPI: http://%s%s)\n", addr, addr, httpapi.OpenAPIPath),
		"gatewayworker api ready", "url", "http://"+addr+"/v1/", "openapi", "http://"+addr+httpapi.OpenAPIPath, "authenticated", len(keyList) > 0)

	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("http api: %w", err)
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(stopCtx)
	if served := <-served; !errors.Is(served, http.ErrServerClosed) {
		return fmt.Errorf("http api: %w", served)
	}
	return err
}

// loopbackAddr reports whether addr listens on loopback only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackHostOnly refuses requests whose Host is not a loopback name: with
// no key, it keeps a web page from reaching the API through DNS rebinding
// (a name of the attacker's that resolves to 127.0.0.1).
func loopbackHostOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		ip := net.ParseIP(strings.Trim(host, "[]"))
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			body, _ := json.Marshal(map[string]any{"error": map[string]string{
				"code":    "forbidden",
				"message": fmt.Sprintf("host %q refused: without API keys only loopback host names are served", r.Host),
			}})
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write(append(body, '\n'))
			return
		}
		h.ServeHTTP(w, r)
	})
}
