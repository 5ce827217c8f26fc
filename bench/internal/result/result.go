// Package result is the record the end-to-end benchmark passes from the
// load generator (bench/loadgen) to the report (bench/report): one JSON
// object per line, one line per measured run.
package result

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// Result is one run of one scenario against one server.
type Result struct {
	// Scenario and Server name what was measured; Run numbers the
	// repetitions from 1. They are labels given on the command line.
	Scenario string `json:"scenario"`
	Server   string `json:"server"`
	Run      int    `json:"run"`

	// Proto, Concurrency, Rcpts and Size describe the load: the dialect,
	// the number of connections sending at once, recipients per message
	// and message size in octets (as sent, before dot-stuffing).
	Proto       string `json:"proto"`
	Concurrency int    `json:"concurrency"`
	Rcpts       int    `json:"rcpts"`
	Size        int64  `json:"size"`

	// Messages counts transactions every recipient of which was accepted;
	// Errors counts replies that were not what a successful transaction
	// gets, and connections that failed; FirstError describes the first.
	Messages   int64  `json:"messages"`
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`

	// Elapsed is the wall time of the measured window in seconds, and
	// MsgsPerSec is Messages/Elapsed.
	Elapsed    float64 `json:"elapsed_s"`
	MsgsPerSec float64 `json:"msgs_per_s"`

	// ServerCPU is the CPU time (user+system) the server's process tree
	// spent in the measured window, in seconds; CPUPer1000 is that per
	// 1,000 messages. ServerProcs is the number of processes in the tree.
	ServerCPU   float64 `json:"server_cpu_s"`
	CPUPer1000  float64 `json:"cpu_s_per_1000"`
	ServerProcs int     `json:"server_procs"`

	// PeakRSS is the server tree's peak resident set since it started
	// (sum of VmHWM), and RSS its resident set at the end of the window
	// (sum of VmRSS), both in bytes.
	PeakRSS int64 `json:"peak_rss"`
	RSS     int64 `json:"rss"`

	// Idle is the number of connections held open in an idle-connection
	// run (0 otherwise).
	Idle int `json:"idle,omitempty"`

	// ClientCPU is the load generator's own CPU time in the window, in
	// seconds: on a small machine it competes with the server.
	ClientCPU float64 `json:"client_cpu_s"`

	// OtherCPU is the CPU time other processes and kernel threads spent in
	// the window, in seconds: the machine's busy time (procstat.Busy) less
	// ServerCPU and ClientCPU, never below zero. It includes kernel threads
	// working for the server, such as the file system journal, and any
	// unrelated load.
	OtherCPU float64 `json:"other_cpu_s"`
}

// Write writes r as one JSON line.
func Write(w io.Writer, r *Result) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	_, err = w.Write(data)
	return err
}

// ReadAll reads JSON lines until EOF. Blank lines are skipped; anything
// else that is not a Result is an error naming the line.
func ReadAll(r io.Reader) ([]Result, error) {
	var out []Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var res Result
		if err := json.Unmarshal(line, &res); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if res.Scenario == "" || res.Server == "" {
			return nil, fmt.Errorf("line %d: no scenario or server", n)
		}
		out = append(out, res)
	}
	return out, sc.Err()
}
