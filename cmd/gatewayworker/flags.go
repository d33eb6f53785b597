package main

import (
	"flag"
	"fmt"
	"io"
	"os"
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

func (c *cli) note(name string) { c.cur.names = append(c.cur.names, name) }

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
func (c *cli) parse(args []string) error {
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	if c.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", c.fs.Arg(0))
	}
	given := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	c.fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %v", envName(f.Name), v, e)
			}
			given[f.Name] = true
		}
	})
	return err
}

// set reports whether a flag was given on the command line or in the environment.
func (c *cli) set(name string) bool {
	found := false
	c.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	if !found {
		_, found = os.LookupEnv(envName(name))
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
			fmt.Fprintf(w, "  --%-20s %s (default %s; env %s)\n", name, f.Usage, def, envName(name))
		}
	}
}
