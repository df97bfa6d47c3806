// Command loadgen is the one load generator of the groupcast benchmark: real WebSocket
// (or, for groupcast, Server-Sent Events) subscribers for every system under test, and
// publishers stamping each message with its phase, sequence number and send time, over
// the system's HTTP publish endpoint or through the subscribers' own WebSockets.
//
// It is driven by bench/ over stdin/stdout, one JSON object a line each way:
//
//	{"cmd":"setup","protocol":"groupcast","ws_url":...,"publish_url":...,"publish_headers":{...},"group_key":"group"}
//	{"cmd":"connect","groups":[{"name":"g0","token":"...","members":1000,"ws_urls":[...]}],"concurrency":64,"timeout_s":60}
//	{"cmd":"phase","id":1,"mode":"closed","window":4,"duration_s":10,"publish":"http",...}
//	{"cmd":"quiesce","quiet_s":1,"timeout_s":20}
//	{"cmd":"close"}
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

type setupSpec struct {
	Protocol       string            `json:"protocol"`
	WSURL          string            `json:"ws_url"`
	PublishURL     string            `json:"publish_url"`
	PublishHeaders map[string]string `json:"publish_headers"`
	GroupKey       string            `json:"group_key"`
	PayloadBytes   int               `json:"payload_bytes"`
	// Transport is "ws" (WebSocket clients, the default) or "sse" (GET SSEURL?token&group).
	Transport string `json:"transport"`
	SSEURL    string `json:"sse_url"`
}

type groupSpec struct {
	Name    string `json:"name"`
	Token   string `json:"token"`
	Members int    `json:"members"`
	// WSURLs, when given, spread the members over several socket processes: member i
	// connects to WSURLs[i % len(WSURLs)] instead of the setup's WSURL.
	WSURLs []string `json:"ws_urls"`
}

type command struct {
	Cmd string `json:"cmd"`
	setupSpec
	Groups      []groupSpec `json:"groups"`
	Concurrency int         `json:"concurrency"`
	TimeoutS    float64     `json:"timeout_s"`
	Phase       phaseSpec   `json:"phase"`
	QuietS      float64     `json:"quiet_s"`
}

type runner struct {
	setup     setupSpec
	proto     protocol
	http      *http.Client
	sse       *http.Client
	padding   string
	groups    []*group
	clients   []*client
	phases    [maxPhases]atomic.Pointer[phase]
	remaining []atomic.Int32
	late      atomic.Int64
}

func main() {
	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	r := &runner{remaining: make([]atomic.Int32, maxMessages)}
	for in.Scan() {
		var cmd command
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			out.Encode(map[string]any{"error": err.Error()})
			continue
		}
		reply, quit := r.handle(cmd)
		out.Encode(reply)
		if quit {
			return
		}
	}
	r.closeAll(2 * time.Second)
}

func (r *runner) handle(cmd command) (map[string]any, bool) {
	switch cmd.Cmd {
	case "setup":
		proto, err := protocolNamed(cmd.Protocol)
		if err != nil {
			return map[string]any{"error": err.Error()}, false
		}
		r.setup, r.proto = cmd.setupSpec, proto
		if r.setup.Transport == "" {
			r.setup.Transport = "ws"
		}
		if r.setup.GroupKey == "" {
			r.setup.GroupKey = "group"
		}
		r.padding = strings.Repeat("x", max(cmd.PayloadBytes, 0))
		r.http = &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				MaxIdleConnsPerHost: 128,
				MaxConnsPerHost:     128,
				DisableCompression:  true,
				IdleConnTimeout:     30 * time.Second,
			},
		}
		return map[string]any{"ok": true}, false
	case "connect":
		if r.proto == nil {
			return map[string]any{"error": "setup first"}, false
		}
		timeout := time.Duration(cmd.TimeoutS * float64(time.Second))
		return asMap(r.connect(cmd.Groups, max(cmd.Concurrency, 1), timeout)), false
	case "phase":
		if cmd.Phase.ID < 0 || cmd.Phase.ID >= maxPhases || r.phases[cmd.Phase.ID].Load() != nil {
			return map[string]any{"error": fmt.Sprintf("bad or reused phase id %d", cmd.Phase.ID)}, false
		}
		if len(r.groups) == 0 {
			return map[string]any{"error": "no groups connected"}, false
		}
		return r.runPhase(cmd.Phase), false
	case "quiesce":
		return r.quiesce(time.Duration(cmd.QuietS*float64(time.Second)),
			time.Duration(cmd.TimeoutS*float64(time.Second))), false
	case "close":
		return map[string]any{"closed": r.closeAll(5 * time.Second)}, false
	case "quit":
		r.closeAll(2 * time.Second)
		return map[string]any{"ok": true}, true
	}
	return map[string]any{"error": "unknown command " + cmd.Cmd}, false
}

// quiesce waits until no message of an earlier phase arrived for `quiet` (at most
// `timeout`), so that one phase's backlog does not spill into the next one.
func (r *runner) quiesce(quiet, timeout time.Duration) map[string]any {
	started := time.Now()
	last, since := r.late.Load(), time.Now()
	for time.Since(started) < timeout && time.Since(since) < quiet {
		time.Sleep(50 * time.Millisecond)
		if now := r.late.Load(); now != last {
			last, since = now, time.Now()
		}
	}
	return map[string]any{"late_so_far": last, "waited_s": time.Since(started).Seconds(),
		"quiet": time.Since(since) >= quiet}
}

func asMap(v any) map[string]any {
	data, _ := json.Marshal(v)
	var m map[string]any
	json.Unmarshal(data, &m)
	return m
}
