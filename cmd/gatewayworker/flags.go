package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
)

// envPrefix: every flag --some-name can also be given as GW_SOME_NAME, for
// containers and compose files; a flag on the command line wins.
const envPrefix = "GW_"

// flagGroup is a titled group of flags in --help.
type flagGroup struct {
	title string
	names []string
}

// cli is one subcommand's flags, grouped by tier for --help.
type cli struct {
	fs     *flag.FlagSet
	groups []flagGroup
	cur    *flagGroup
	// envNames are the variables of flags whose generic name (--json,
	// --timeout, --addr) would mean different things to different
	// commands: they are GW_<COMMAND>_<FLAG>, one name per meaning.
	envNames map[string]string
	scoped   bool
}

// usageError is a command line the command cannot run: exit code 2, and
// the command's flags are printed with it.
type usageError struct {
	err   error
	usage string
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usageError without the flags listing, for a value a
// flag cannot take.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

func newCLI(name, usage string) *cli {
	c := &cli{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.fs.SetOutput(io.Discard)
	c.fs.Usage = func() {}
	c.groups = []flagGroup{{title: usage}}
	return c
}

func (c *cli) group(title string) {
	c.groups = append(c.groups, flagGroup{title: title})
	c.cur = &c.groups[len(c.groups)-1]
}

func (c *cli) note(name string) {
	c.cur.names = append(c.cur.names, name)
	if c.scoped {
		if c.envNames == nil {
			c.envNames = map[string]string{}
		}
		c.envNames[name] = envPrefix + strings.ToUpper(c.fs.Name()) + "_" + strings.TrimPrefix(envName(name), envPrefix)
	}
}

// commandScoped makes the environment variables of the flags declared
// from now on GW_<COMMAND>_<FLAG>.
func (c *cli) commandScoped() { c.scoped = true }

// env is the environment variable of flag name.
func (c *cli) env(name string) string {
	if e, ok := c.envNames[name]; ok {
		return e
	}
	return envName(name)
}

func (c *cli) str(p *string, name, def, usage string) {
	c.fs.StringVar(p, name, def, usage)
	c.note(name)
}

func (c *cli) int(p *int, name string, def int, usage string) {
	c.fs.IntVar(p, name, def, usage)
	c.note(name)
}

func (c *cli) boolean(p *bool, name string, def bool, usage string) {
	c.fs.BoolVar(p, name, def, usage)
	c.note(name)
}

func (c *cli) dur(p *time.Duration, name string, def time.Duration, usage string) {
	c.fs.DurationVar(p, name, def, usage)
	c.note(name)
}

// parse reads the command line, then GW_* variables for flags not given.
// Its errors are usageErrors naming the flag or variable and the format
// it wants.
func (c *cli) parse(args []string) error {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		msg := strings.Replace(err.Error(), " -", " --", 1)
		// Go says only "parse error": say what the flag wants.
		if m := regexp.MustCompile(`^invalid value .* for flag --([a-z0-9-]+): `).FindStringSubmatch(msg); m != nil {
			if f := c.fs.Lookup(m[1]); f != nil {
				msg = m[0] + "want " + valueFormat(f)
			}
		}
		return c.usageErr(msg)
	}
	if c.fs.NArg() > 0 {
		return c.usageErr(fmt.Sprintf("unexpected argument %q", c.fs.Arg(0)))
	}
	given := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	c.fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(c.env(f.Name)); ok {
			if f.Value.Set(v) != nil {
				err = usagef("%s=%q: want %s (as --%s)", c.env(f.Name), v, valueFormat(f), f.Name)
			}
			given[f.Name] = true
		}
	})
	return err
}

func (c *cli) usageErr(msg string) error {
	var b strings.Builder
	c.usage(&b)
	return &usageError{err: errors.New(msg), usage: b.String()}
}

// valueFormat describes what a flag's value must look like.
func valueFormat(f *flag.Flag) string {
	switch f.Value.(flag.Getter).Get().(type) {
	case time.Duration:
		return "a duration such as 500ms, 10s or 1m30s"
	case int:
		return "a whole number"
	case bool:
		return "true or false"
	}
	return "a string"
}

// set reports whether a flag was given on the command line or in the environment.
func (c *cli) set(name string) bool {
	found := false
	c.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	if !found {
		_, found = os.LookupEnv(c.env(name))
	}
	return found
}

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprintln(w, c.groups[0].title)
	for _, g := range c.groups[1:] {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.names {
			f := c.fs.Lookup(name)
			def := f.DefValue
			if def == "" {
				def = `""`
			}
			fmt.Fprintf(w, "  --%-20s %s (default %s; env %s)\n", name, f.Usage, def, c.env(name))
		}
	}
}
