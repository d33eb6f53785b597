package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The embedded NATS of `run` requires a token even when none is given: one
// generated at start, written where only this user can read it, so that
// tiers started beside `run` on this host (`worker`, `gateway`, `api`,
// `status`) authenticate with it and other local users cannot read client
// traffic, push or forge events.

// localTokenFile is where `run` keeps the token of its embedded NATS on
// port: $XDG_RUNTIME_DIR/gatewayworker/nats-PORT.token, or under
// os.UserConfigDir() (~/.config on Linux) without XDG_RUNTIME_DIR.
func localTokenFile(port int) (string, error) {
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		var err error
		if dir, err = os.UserConfigDir(); err != nil {
			return "", fmt.Errorf("no directory for the embedded NATS token: %w", err)
		}
	}
	return filepath.Join(dir, "gatewayworker", "nats-"+strconv.Itoa(port)+".token"), nil
}

// writeLocalToken writes token, readable by this user only (0600 in a 0700
// directory), to localTokenFile(port). remove deletes the file.
func writeLocalToken(port int, token string) (path string, remove func(), err error) {
	if path, err = localTokenFile(port); err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", nil, fmt.Errorf("embedded NATS token: %w", err)
	}
	// A file created elsewhere and renamed over the old one: a reader never
	// sees half a token, and an older file's looser mode is not kept.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".nats-token-*")
	if err != nil {
		return "", nil, fmt.Errorf("embedded NATS token: %w", err)
	}
	_, err = tmp.WriteString(token + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path) // CreateTemp made it 0600
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return "", nil, fmt.Errorf("embedded NATS token: %w", err)
	}
	return path, func() { _ = os.Remove(path) }, nil
}

// readLocalToken returns the token of a `run` on this host when urls is one
// loopback URL whose port has a token file; "" when it has none. A token is
// never sent to a server beyond loopback.
func readLocalToken(urls string) (token, path string, err error) {
	port, ok := loopbackPort(urls)
	if !ok {
		return "", "", nil
	}
	if path, err = localTokenFile(port); err != nil {
		return "", "", nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("embedded NATS token: %w", err)
	}
	return strings.TrimSpace(string(b)), path, nil
}

// loopbackPort is the port of urls when it is a single loopback NATS URL.
func loopbackPort(urls string) (int, bool) {
	list := splitList(urls)
	if len(list) != 1 {
		return 0, false
	}
	raw := list[0]
	if !strings.Contains(raw, "://") {
		raw = "nats://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil {
		return 0, false
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return 0, false
	}
	port := 4222
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return 0, false
		}
	}
	return port, true
}
