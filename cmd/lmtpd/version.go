package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// buildInfo is what "lmtpd version" reports about the binary.
type buildInfo struct {
	Version  string // release tag, module (pseudo-)version, or "devel"
	Commit   string // VCS revision, "-dirty" when the tree had changes; "unknown"
	Go       string // the Go release that built it, e.g. "go1.26.8"
	Platform string // GOOS/GOARCH
}

// readBuildInfo combines the -ldflags values with what the Go toolchain
// records in the binary: the -X value wins (make build sets both from git),
// then the module version "go install module@version" records (a tag or a
// pseudo-version, which names the commit too) and the VCS stamp of a build
// inside a checkout (vcs.revision, vcs.modified; absent with
// -buildvcs=false).
func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		if b.Commit == "" {
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if rev != "" && modified == "true" {
				rev += "-dirty"
			}
			b.Commit = rev
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

// versionString returns the build's version, as logged at start and
// exported in metrics.
func versionString() string {
	return readBuildInfo().Version
}

// writeVersion prints the version report: "lmtpd VERSION" first (what
// scripts grep), then the commit and the Go release.
func writeVersion(w io.Writer, b buildInfo) {
	fmt.Fprintf(w, "lmtpd %s\ncommit %s\nbuilt with %s %s\n", b.Version, b.Commit, b.Go, b.Platform)
}

func cmdVersion(args []string, stdout io.Writer, stderr io.Writer) int {
	fs := newFlagSet("version", versionUsage, stderr)
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exUsage
	}
	writeVersion(stdout, readBuildInfo())
	return exOK
}

const versionUsage = `lmtpd version

Prints the version (a release tag, the module version "go install" recorded,
or "devel"), the commit it was built from ("-dirty" with uncommitted
changes) and the Go release and platform that built it. "lmtpd --version"
and "lmtpd -version" are the same.`
