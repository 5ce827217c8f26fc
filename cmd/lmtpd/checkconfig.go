package main

import (
	"bytes"
	"fmt"
	"io"

	"github.com/BurntSushi/toml"
)

const checkConfigUsage = "lmtpd check-config [-config FILE] [-q]\n\nValidates the configuration (the embedded default without -config) and prints\nit with every default filled in and relative paths made absolute. Exit status\n0 if it is valid, 78 (EX_CONFIG) with one line per problem if not. Whether a\nlistener's address is free is found out only by serve, which then exits 78 too."

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check-config", checkConfigUsage, stderr)
	file := fs.String("config", "", "configuration `file` (default: the embedded one)")
	quiet := fs.Bool("q", false, "print nothing when the configuration is valid")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exUsage
	}
	cfg, err := loadConfig(*file)
	if err != nil {
		printConfigError(stderr, err)
		return exConfig
	}
	if *quiet {
		return exOK
	}
	text, err := cfg.effective()
	if err != nil {
		fmt.Fprintf(stderr, "lmtpd: %v\n", err)
		return exSoftware
	}
	fmt.Fprintf(stdout, "# Effective configuration of %s: every default filled in.\n", cfg.file)
	stdout.Write(text)
	return exOK
}

// effective returns the configuration as TOML, defaults included; it
// decodes back to the same configuration.
func (c *config) effective() ([]byte, error) {
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	enc.Indent = ""
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
