// Package readme holds what both benchmark reports need: a description of
// the machine measured on, and rewriting the marked section of a markdown
// file.
package readme

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Machine describes this machine: CPU count and model, kernel and Go
// version.
func Machine() string {
	kernel, _ := exec.Command("uname", "-r").Output()
	cpu := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = " (" + strings.TrimSpace(v) + ")"
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs%s, Linux %s, %s", runtime.NumCPU(), cpu, strings.TrimSpace(string(kernel)), runtime.Version())
}

// Rewrite replaces the text between the begin and end markers in the file
// at path with section.
func Rewrite(path, begin, end string, section []byte) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b := bytes.Index(data, []byte(begin))
	e := bytes.Index(data, []byte(end))
	if b < 0 || e < b {
		return fmt.Errorf("%s: markers %s ... %s not found", path, begin, end)
	}
	var out bytes.Buffer
	out.Write(data[:b+len(begin)])
	out.WriteString("\n")
	out.Write(section)
	out.WriteString("\n")
	out.Write(data[e:])
	return os.WriteFile(path, out.Bytes(), 0o644)
}
