package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Modes.
const (
	modeConns  = "conns"
	modeEcho   = "echo"
	modeFanout = "fanout"
	modeGroup  = "group"
)

// Defaults of the flags.
const (
	DefaultURL          = "ws://127.0.0.1:7272/"
	DefaultDuration     = 10 * time.Second
	DefaultDrain        = 2 * time.Second
	DefaultHold         = 5 * time.Second
	DefaultDialParallel = 64
	DefaultDialTimeout  = 10 * time.Second
	DefaultSources      = "8"
	DefaultSample       = 100
	// fdReserve is how many file descriptors a process keeps for itself
	// (pipes, listeners, the driver's connections are counted apart).
	fdReserve = 128
	// maxSources bounds --sources.
	maxSources = 1024
)

// config is one run, as parsed from the flags. It is also sent to child
// processes as JSON, so every field is exported.
type config struct {
	Mode string `json:"mode"`
	// URL is --url as given; URLs are its comma-separated servers.
	// Connection i goes to URLs[i mod len(URLs)].
	URL      string        `json:"url"`
	URLs     []string      `json:"urls"`
	Duration time.Duration `json:"duration"`
	Drain    time.Duration `json:"drain"`
	Hold     time.Duration `json:"hold"`
	// N is the number of connections the shards open: -n for conns and
	// fanout, -c for echo, groups*members for group.
	N          int     `json:"n"`
	Size       int     `json:"size"`
	Rate       float64 `json:"rate"`
	Groups     int     `json:"groups"`
	Members    int     `json:"members"`
	Senders    int     `json:"senders"`
	Sample     int     `json:"sample"`
	ServerPIDs []int   `json:"server_pids"`
	// Sources are the local addresses connections are spread over; empty
	// means the kernel's choice.
	Sources      []netip.Addr `json:"sources"`
	DialParallel int          `json:"dial_parallel"`
	// DialRate caps new connections per second over all processes; 0 does not.
	DialRate    float64       `json:"dial_rate"`
	DialTimeout time.Duration `json:"dial_timeout"`
	// Timeout is the global deadline of the run, resolved (never zero).
	Timeout    time.Duration `json:"timeout"`
	MaxPerProc int           `json:"max_per_proc"`
	// RunID makes the group names of this run unique on a shared server.
	RunID string `json:"run_id"`
	// Broadcast (conns) sends one a: broadcast after the hold and counts
	// its deliveries.
	Broadcast bool `json:"broadcast"`
	JSON      bool `json:"-"`
}

// errUnknownMode is returned for a mode that does not exist.
var errUnknownMode = errors.New("unknown mode")

// hiddenFlag reports whether a flag is left out of --help: --child is
// for child processes, --max-per-proc for tests of the split.
func hiddenFlag(name string) bool { return name == "child" || name == "max-per-proc" }

// parseMode parses the flags of one load mode. It returns a child spec
// instead when the hidden --child flag is set.
func parseMode(mode string, args []string, stdout, stderr io.Writer) (config, *shardSpec, error) {
	cfg := config{Mode: mode}
	fs := flag.NewFlagSet("gwbench "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.URL, "url", DefaultURL, "WebSocket `URL` of the server (loopback only); a comma list spreads connections over several servers")
	if mode != modeConns {
		fs.DurationVar(&cfg.Duration, "duration", DefaultDuration, "how long the load runs")
	}
	fs.IntVar(&cfg.DialParallel, "dial-parallel", DefaultDialParallel, "connections dialled at once (over all processes)")
	fs.Float64Var(&cfg.DialRate, "dial-rate", 0, "new connections per second at most, over all processes (0: as fast as --dial-parallel goes)")
	fs.DurationVar(&cfg.DialTimeout, "dial-timeout", DefaultDialTimeout, "timeout of one dial, handshake included; also bounds a join and a sample echo")
	sources := fs.String("sources", DefaultSources, "local source addresses: a count (with --source-base), a range 127.0.1.1-127.0.1.8, a comma list, or none")
	sourceBase := fs.String("source-base", "", "first source address when --sources is a count (default: a random 127.x.y.1 per run, against TIME_WAIT)")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "global deadline of the run (default: duration + hold + drain + 60s + 2ms per connection)")
	fs.BoolVar(&cfg.JSON, "json", false, "print one JSON object on stdout (the human summary goes to stderr)")
	fs.IntVar(&cfg.MaxPerProc, "max-per-proc", 0, "connections per process at most (0: from the open-file limit)")
	childJSON := fs.String("child", "", "run as a child process with this JSON spec")
	switch mode {
	case modeConns:
		fs.IntVar(&cfg.N, "n", 1000, "connections to open")
		fs.DurationVar(&cfg.Hold, "hold", DefaultHold, "how long the connections are held idle before RSS is read")
		fs.IntVar(&cfg.Sample, "sample", DefaultSample, "connections checked by one echo at the end (-1: all)")
		fs.BoolVar(&cfg.Broadcast, "broadcast", false, "after the hold, send one a: broadcast (the server's SendToAll) and check every connection gets it once")
		fs.DurationVar(&cfg.Drain, "drain", DefaultDrain, "how long connections may take to get the --broadcast")
		fs.Func("server-pid", "`pids` of the server, comma-separated: their VmRSS is summed (none: no RSS)", func(s string) error {
			var err error
			cfg.ServerPIDs, err = parsePIDs(s)
			return err
		})
	case modeEcho:
		fs.IntVar(&cfg.N, "c", 100, "closed-loop connections")
		fs.IntVar(&cfg.Size, "size", 64, "payload bytes")
	case modeFanout:
		fs.IntVar(&cfg.N, "n", 1000, "receivers")
		fs.Float64Var(&cfg.Rate, "rate", 100, "broadcasts per second")
		fs.DurationVar(&cfg.Drain, "drain", DefaultDrain, "how long receivers may still get messages after the last send")
	case modeGroup:
		fs.IntVar(&cfg.Groups, "groups", 100, "groups")
		fs.IntVar(&cfg.Members, "members", 10, "members per group")
		fs.IntVar(&cfg.Senders, "senders", 0, "sender connections, each owning a share of the groups (0: min(groups, 8))")
		fs.Float64Var(&cfg.Rate, "rate", 2000, "group sends per second, in total")
		fs.DurationVar(&cfg.Drain, "drain", DefaultDrain, "how long members may still get messages after the last send")
	default:
		return cfg, nil, fmt.Errorf("%w %q (want conns, echo, fanout, group or refserver; see --help)", errUnknownMode, mode)
	}
	fs.Usage = func() { printFlags(stdout, fs, mode) }
	if err := fs.Parse(args); err != nil {
		return cfg, nil, err
	}
	if fs.NArg() > 0 {
		return cfg, nil, fmt.Errorf("%s: unexpected arguments %q", mode, fs.Args())
	}
	if *childJSON != "" {
		var spec shardSpec
		if err := json.Unmarshal([]byte(*childJSON), &spec); err != nil {
			return cfg, nil, fmt.Errorf("child spec: %w", err)
		}
		return spec.Cfg, &spec, nil
	}
	if mode == modeGroup {
		cfg.N = cfg.Groups * cfg.Members
		if cfg.Senders <= 0 {
			cfg.Senders = min(cfg.Groups, 8)
		}
	}
	for _, u := range strings.Split(cfg.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.URLs = append(cfg.URLs, u)
		}
	}
	if len(cfg.URLs) == 0 {
		return cfg, nil, errors.New("--url: no URL given")
	}
	var err error
	if cfg.Sources, err = resolveSources(cfg.URLs[0], *sources, *sourceBase); err != nil {
		return cfg, nil, err
	}
	if cfg.RunID, err = randomHex(4); err != nil {
		return cfg, nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = cfg.Duration + cfg.Hold + cfg.Drain + time.Minute + time.Duration(cfg.N)*2*time.Millisecond
	}
	return cfg, nil, cfg.validate()
}

func (c config) validate() error {
	for _, raw := range c.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("--url: %w", err)
		}
		if u.Scheme != "ws" && u.Scheme != "wss" {
			return fmt.Errorf("--url %q: scheme must be ws or wss", raw)
		}
		if c.Mode == modeConns && u.Scheme != "ws" {
			return fmt.Errorf("--url %q: conns mode speaks ws:// only", raw)
		}
		if _, err := loopbackHost(u); err != nil {
			return err
		}
	}
	switch {
	case c.N <= 0:
		return fmt.Errorf("the number of connections must be positive, got %d", c.N)
	case c.Duration <= 0 && c.Mode != modeConns:
		return fmt.Errorf("--duration must be positive, got %v", c.Duration)
	case c.DialRate < 0:
		return fmt.Errorf("--dial-rate must not be negative, got %v", c.DialRate)
	case c.DialParallel <= 0:
		return fmt.Errorf("--dial-parallel must be positive, got %d", c.DialParallel)
	case c.DialTimeout <= 0:
		return fmt.Errorf("--dial-timeout must be positive, got %v", c.DialTimeout)
	case c.Drain < 0 || c.Hold < 0:
		return errors.New("--drain and --hold must not be negative")
	case c.MaxPerProc < 0:
		return fmt.Errorf("--max-per-proc must not be negative, got %d", c.MaxPerProc)
	}
	switch c.Mode {
	case modeEcho:
		if c.Size < 1 {
			return fmt.Errorf("--size must be at least 1, got %d", c.Size)
		}
	case modeFanout, modeGroup:
		if c.Rate <= 0 {
			return fmt.Errorf("--rate must be positive, got %v", c.Rate)
		}
		if c.Mode == modeGroup && (c.Groups <= 0 || c.Members <= 0) {
			return fmt.Errorf("--groups (%d) and --members (%d) must be positive", c.Groups, c.Members)
		}
	}
	return nil
}

// printFlags prints the usage of a mode without the hidden flags.
func printFlags(w io.Writer, fs *flag.FlagSet, mode string) {
	fmt.Fprintf(w, "Usage: gwbench %s [flags]\n\nFlags:\n", mode)
	fs.VisitAll(func(f *flag.Flag) {
		if hiddenFlag(f.Name) {
			return
		}
		name, use := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if len(f.Name) == 1 {
			line = "  -" + f.Name
		}
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, use)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// parsePIDs parses "123,456".
func parsePIDs(s string) ([]int, error) {
	var pids []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("--server-pid: bad pid %q", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// loopbackHost returns the IP of u's host and fails unless it is a
// loopback address: load tests run on loopback only.
func loopbackHost(u *url.URL) (netip.Addr, error) {
	host := u.Hostname()
	if host == "localhost" {
		return netip.MustParseAddr("127.0.0.1"), nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return netip.Addr{}, fmt.Errorf("--url %q: the host must be a loopback address (127.0.0.0/8, ::1 or localhost)", u.String())
	}
	return ip, nil
}

// resolveSources turns --sources and --source-base into addresses. A count
// starts at base, or at a random 127.x.y.1 so that back-to-back runs do not
// reuse the ports left in TIME_WAIT by the previous one (COOKBOOK gotcha 19).
// An IPv6 target gets no source addresses.
func resolveSources(rawURL, spec, base string) ([]netip.Addr, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	target, err := loopbackHost(u)
	if err != nil {
		return nil, err
	}
	spec = strings.TrimSpace(spec)
	if spec == "none" || spec == "" || target.Is6() {
		return nil, nil
	}
	if n, err := strconv.Atoi(spec); err == nil {
		if n < 1 || n > maxSources {
			return nil, fmt.Errorf("--sources: count %d out of 1..%d", n, maxSources)
		}
		start, err := sourceBase(base)
		if err != nil {
			return nil, err
		}
		out := make([]netip.Addr, 0, n)
		for a := start; len(out) < n; a = a.Next() {
			if !a.IsLoopback() {
				return nil, fmt.Errorf("--source-base %s: %d addresses leave 127.0.0.0/8", start, n)
			}
			out = append(out, a)
		}
		return out, nil
	}
	var out []netip.Addr
	for _, item := range strings.Split(spec, ",") {
		addrs, err := parseSourceItem(strings.TrimSpace(item))
		if err != nil {
			return nil, err
		}
		out = append(out, addrs...)
		if len(out) > maxSources {
			return nil, fmt.Errorf("--sources: more than %d addresses", maxSources)
		}
	}
	return out, nil
}

// parseSourceItem parses one address, or a range "a-b" where b is a full
// address or the last octet.
func parseSourceItem(item string) ([]netip.Addr, error) {
	lo, hi, isRange := strings.Cut(item, "-")
	first, err := netip.ParseAddr(lo)
	if err != nil || !first.Is4() || !first.IsLoopback() {
		return nil, fmt.Errorf("--sources: %q is not an IPv4 loopback address", lo)
	}
	if !isRange {
		return []netip.Addr{first}, nil
	}
	last, err := netip.ParseAddr(hi)
	if err != nil {
		octet, aerr := strconv.Atoi(hi)
		if aerr != nil || octet < 0 || octet > 255 {
			return nil, fmt.Errorf("--sources: bad range end %q", hi)
		}
		b := first.As4()
		b[3] = byte(octet)
		last = netip.AddrFrom4(b)
	}
	if !last.Is4() || !last.IsLoopback() || last.Less(first) {
		return nil, fmt.Errorf("--sources: bad range %q", item)
	}
	var out []netip.Addr
	for a := first; !last.Less(a); a = a.Next() {
		out = append(out, a)
		if len(out) > maxSources {
			return nil, fmt.Errorf("--sources: range %q has more than %d addresses", item, maxSources)
		}
	}
	return out, nil
}

// sourceBase parses --source-base, or picks 127.x.y.1 at random with x in
// 1..254 (never 127.0.0.x, where servers listen).
func sourceBase(base string) (netip.Addr, error) {
	if base != "" {
		a, err := netip.ParseAddr(base)
		if err != nil || !a.Is4() || !a.IsLoopback() {
			return netip.Addr{}, fmt.Errorf("--source-base %q is not an IPv4 loopback address", base)
		}
		return a, nil
	}
	x, err := rand.Int(rand.Reader, big.NewInt(254*256))
	if err != nil {
		return netip.Addr{}, err
	}
	v := x.Int64()
	return netip.AddrFrom4([4]byte{127, byte(1 + v/256), byte(v % 256), 1}), nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// sourceRange describes sources for humans: "127.9.3.1-127.9.3.8".
func sourceRange(src []netip.Addr) string {
	if len(src) == 0 {
		return "kernel default"
	}
	s := append([]netip.Addr(nil), src...)
	sort.Slice(s, func(i, j int) bool { return s[i].Less(s[j]) })
	contiguous := true
	for i := 1; i < len(s); i++ {
		if s[i] != s[i-1].Next() {
			contiguous = false
			break
		}
	}
	if len(s) == 1 {
		return s[0].String()
	}
	if contiguous {
		return s[0].String() + "-" + s[len(s)-1].String()
	}
	parts := make([]string, len(s))
	for i, a := range s {
		parts[i] = a.String()
	}
	return strings.Join(parts, ",")
}

// tcpAddr is the local address of a dial from src.
func tcpAddr(src netip.Addr) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
}
