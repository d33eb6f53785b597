package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// wireMsg is one JSON line between the parent and a child. Parent to
// child: "go", "end" (with End), "stop" (stop dialling now). Child to
// parent: "ready" and "result" (with Stats), "error".
type wireMsg struct {
	Type  string      `json:"type"`
	Stats *shardStats `json:"stats,omitempty"`
	End   *endInfo    `json:"end,omitempty"`
	Error string      `json:"error,omitempty"`
}

// Message types.
const (
	msgReady  = "ready"
	msgResult = "result"
	msgError  = "error"
	msgGo     = "go"
	msgEnd    = "end"
	msgStop   = "stop"
)

// finishTimeout bounds the end phase: the drain, a sample echo round (two
// milliseconds per sampled connection on top: a million echoes took 1.1 ms
// each on the saturated box of million.sh, and the millisecond they had
// cut the run off at 70 % with every result lost), and closing the
// connections.
func finishTimeout(cfg config) time.Duration {
	sampled := cfg.Sample
	if sampled < 0 || sampled > cfg.N {
		sampled = cfg.N
	}
	if cfg.Mode != modeConns {
		sampled = 0
	}
	return cfg.Drain + 2*cfg.DialTimeout + 30*time.Second + 2*time.Duration(sampled)*time.Millisecond
}

// raiseNoFile raises the soft open-file limit to the hard one and returns
// the soft limit in force.
func raiseNoFile() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = raised.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	return lim.Cur
}

// childShard is a shard run by a child process: this executable started
// again with the mode and the hidden --child flag.
type childShard struct {
	spec   shardSpec
	stderr io.Writer
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	msgs   chan wireMsg
	// wmu serialises writes to stdin.
	wmu      sync.Mutex
	waitOnce sync.Once
}

func newChildShard(spec shardSpec, stderr io.Writer) *childShard {
	return &childShard{spec: spec, stderr: stderr}
}

func (c *childShard) start() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	spec, err := json.Marshal(c.spec)
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, c.spec.Cfg.Mode, "--child", string(spec))
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = c.stderr
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.cmd = cmd
	c.msgs = make(chan wireMsg, 4)
	// The decoder goroutine ends at the child's EOF; wait reaps it.
	go func() {
		defer close(c.msgs)
		dec := json.NewDecoder(stdout)
		for {
			var m wireMsg
			if err := dec.Decode(&m); err != nil {
				return
			}
			c.msgs <- m
		}
	}()
	return nil
}

func (c *childShard) send(m wireMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err = c.stdin.Write(append(b, '\n'))
	return err
}

// await returns the next message, which must be of type want.
func (c *childShard) await(ctx context.Context, want string) (*shardStats, error) {
	select {
	case m, ok := <-c.msgs:
		if !ok {
			return nil, fmt.Errorf("child %d exited before %q", c.spec.Index, want)
		}
		if m.Type == msgError {
			return nil, fmt.Errorf("child %d: %s", c.spec.Index, m.Error)
		}
		if m.Type != want || m.Stats == nil {
			return nil, fmt.Errorf("child %d: got %q, want %q", c.spec.Index, m.Type, want)
		}
		return m.Stats, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("child %d: no %q: %w", c.spec.Index, want, ctx.Err())
	}
}

func (c *childShard) prepare(ctx context.Context) (*shardStats, error) {
	if err := c.start(); err != nil {
		return nil, fmt.Errorf("child %d: start: %w", c.spec.Index, err)
	}
	st, err := c.await(ctx, msgReady)
	if err == nil || ctx.Err() == nil {
		return st, err
	}
	// Interrupted: tell the child to stop dialling and report what it has.
	_ = c.send(wireMsg{Type: msgStop})
	fctx, cancel := context.WithTimeout(context.Background(), finishTimeout(c.spec.Cfg))
	defer cancel()
	return c.await(fctx, msgReady)
}

func (c *childShard) begin() error { return c.send(wireMsg{Type: msgGo}) }

func (c *childShard) end(ctx context.Context, e endInfo) (*shardStats, error) {
	if err := c.send(wireMsg{Type: msgEnd, End: &e}); err != nil {
		c.kill()
		return nil, fmt.Errorf("child %d: %w", c.spec.Index, err)
	}
	st, err := c.await(ctx, msgResult)
	if err != nil {
		c.kill()
		return nil, err
	}
	return st, nil // the child keeps its connections until kill
}

// wait closes stdin, reads what is left, and reaps the child, killing it
// if it has not exited within d.
func (c *childShard) wait(d time.Duration) {
	if c.cmd == nil {
		return
	}
	c.waitOnce.Do(func() {
		_ = c.stdin.Close()
		t := time.AfterFunc(d, func() { _ = c.cmd.Process.Kill() })
		for range c.msgs {
		}
		t.Stop()
		_ = c.cmd.Wait()
	})
}

// kill closes the child's pipe, on which it closes its connections and
// exits; it is killed if it has not within 10 s.
func (c *childShard) kill() {
	if c.cmd == nil {
		return
	}
	c.wait(10 * time.Second)
}

// runChild runs one shard for a parent process: it reports "ready" after
// dialling, starts the load on "go", and reports "result" after "end".
// It ignores Ctrl-C (the parent ends it), stops when the parent's pipe
// closes, and exits by itself past the run's deadline.
func runChild(spec shardSpec, stdin io.Reader, stdout, stderr io.Writer) error {
	signal.Ignore(os.Interrupt)
	raiseNoFile()
	hard := time.AfterFunc(time.Until(spec.Deadline)+finishTimeout(spec.Cfg)+15*time.Second, func() {
		fmt.Fprintf(stderr, "gwbench: child %d: past the deadline, exiting\n", spec.Index)
		os.Exit(3)
	})
	defer hard.Stop()
	enc := json.NewEncoder(stdout)

	ctx, cancel := context.WithDeadline(context.Background(), spec.Deadline.Add(finishTimeout(spec.Cfg)))
	defer cancel()
	prepCtx, stopPrep := context.WithDeadline(ctx, spec.Deadline)
	defer stopPrep()
	cmds := make(chan wireMsg, 4)
	go func() {
		// Ends at EOF: the parent closed the pipe or is gone.
		defer close(cmds)
		defer stopPrep()
		dec := json.NewDecoder(stdin)
		for {
			var m wireMsg
			if err := dec.Decode(&m); err != nil {
				return
			}
			if m.Type == msgStop || m.Type == msgEnd {
				stopPrep()
			}
			select {
			case cmds <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	sh := newShard(spec)
	ready, err := sh.prepare(prepCtx)
	if err != nil {
		sh.kill()
		_ = enc.Encode(wireMsg{Type: msgError, Error: err.Error()})
		return err
	}
	if err := enc.Encode(wireMsg{Type: msgReady, Stats: ready}); err != nil {
		sh.kill()
		return err
	}
	var e *endInfo
	for e == nil {
		m, ok := <-cmds
		if !ok {
			sh.kill()
			return errors.New("parent closed the pipe before the end")
		}
		switch m.Type {
		case msgGo:
			if err := sh.begin(); err != nil {
				sh.kill()
				return err
			}
		case msgEnd:
			e = m.End
			if e == nil {
				e = &endInfo{}
			}
		}
	}
	res, err := sh.end(ctx, *e)
	if err != nil {
		sh.kill()
		_ = enc.Encode(wireMsg{Type: msgError, Error: err.Error()})
		return err
	}
	err = enc.Encode(wireMsg{Type: msgResult, Stats: res})
	// The connections stay open until the parent closes the pipe, once
	// every child has ended (see execute).
	for range cmds {
	}
	sh.kill()
	return err
}
