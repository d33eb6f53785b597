package main

import (
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// dialer dials the target from the source addresses, one gorilla Dialer
// per source. Connection i always uses source i mod len(sources), so the
// shards of a split run spread exactly like one process would.
type dialer struct {
	urls    []string
	timeout time.Duration
	ds      []*websocket.Dialer
}

func newDialer(cfg config) *dialer {
	pool := &sync.Pool{}
	wbuf := 1024
	if cfg.Size+16 > wbuf {
		wbuf = cfg.Size + 16
	}
	mk := func(local *net.TCPAddr) *websocket.Dialer {
		nd := &net.Dialer{Timeout: cfg.DialTimeout}
		if local != nil {
			nd.LocalAddr = local
		}
		return &websocket.Dialer{
			NetDialContext:   nd.DialContext,
			HandshakeTimeout: cfg.DialTimeout,
			ReadBufferSize:   1024,
			WriteBufferSize:  wbuf,
			WriteBufferPool:  pool,
		}
	}
	d := &dialer{urls: cfg.URLs, timeout: cfg.DialTimeout}
	for _, src := range cfg.Sources {
		d.ds = append(d.ds, mk(tcpAddr(src)))
	}
	if len(d.ds) == 0 {
		d.ds = append(d.ds, mk(nil))
	}
	return d
}

// dial opens connection idx to URL idx mod len(urls). The handshake
// response body is closed here.
func (d *dialer) dial(ctx context.Context, idx int) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	c, resp, err := d.ds[idx%len(d.ds)].DialContext(ctx, d.urls[idx%len(d.urls)], nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	return c, err
}

// forEach runs fn(i) for i in [lo, hi) on at most parallel goroutines, and
// stops starting new calls once ctx is done. It returns when every call
// it started has returned.
func forEach(ctx context.Context, lo, hi, parallel int, fn func(i int)) {
	var next atomic.Int64
	next.Store(int64(lo))
	var wg sync.WaitGroup
	for range min(parallel, hi-lo) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= hi {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// pace waits until the j-th dial of a shard that started at t0 may go at
// rate per second (at once when rate is 0 or it is late). It reports false
// when ctx ended first.
func pace(ctx context.Context, t0 time.Time, j int, rate float64) bool {
	if rate > 0 {
		sleepCtx(ctx, time.Until(t0.Add(time.Duration(float64(j)/rate*float64(time.Second)))))
	}
	return ctx.Err() == nil
}

// closeConn sends a normal close frame (best effort) and closes the socket.
func closeConn(c *websocket.Conn) {
	_ = c.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(100*time.Millisecond))
	_ = c.Close()
}

// readInto reads the next data message into buf. It returns the length,
// and long=true (with n=len(buf)) when the message did not fit; the rest of
// a long message is discarded. Control frames are handled by gorilla.
func readInto(c *websocket.Conn, buf []byte) (n int, long bool, err error) {
	_, r, err := c.NextReader()
	if err != nil {
		return 0, false, err
	}
	n, err = io.ReadFull(r, buf)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return n, false, nil
	case err != nil:
		return n, false, err
	}
	extra, err := io.Copy(io.Discard, r)
	return n, extra > 0, err
}

// errCounts counts errors by their text with addresses and ports replaced,
// so ten thousand "connection refused" from as many ports count as one.
type errCounts struct {
	mu sync.Mutex
	m  map[string]int64
}

var addrRE = regexp.MustCompile(`(\d{1,3}\.){3}\d{1,3}(:\d+)?|\[[0-9a-fA-F:]+\](:\d+)?`)

func (e *errCounts) add(prefix string, err error) {
	e.addKey(prefix+": "+addrRE.ReplaceAllString(err.Error(), "ADDR"), 1)
}

func (e *errCounts) addKey(key string, n int64) {
	e.mu.Lock()
	if e.m == nil {
		e.m = make(map[string]int64)
	}
	e.m[key] += n
	e.mu.Unlock()
}

// snapshot copies the counts.
func (e *errCounts) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int64, len(e.m))
	for k, v := range e.m {
		out[k] = v
	}
	return out
}

// errCount is one line of the error summary.
type errCount struct {
	Error string `json:"error"`
	Count int64  `json:"count"`
}

// topErrors returns the total and the n most frequent errors.
func topErrors(m map[string]int64, n int) (int64, []errCount) {
	var total int64
	all := make([]errCount, 0, len(m))
	for k, v := range m {
		total += v
		all = append(all, errCount{k, v})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Count != all[j].Count {
			return all[i].Count > all[j].Count
		}
		return all[i].Error < all[j].Error
	})
	if len(all) > n {
		all = all[:n]
	}
	return total, all
}
