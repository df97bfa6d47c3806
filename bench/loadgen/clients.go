package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

const maxPhases = 64

// client is one subscriber: a WebSocket (conn) or a Server-Sent Events stream (body).
// Only its reader goroutine reads; writes (pings answered, publishes) hold writeMu.
type client struct {
	conn      *websocket.Conn
	body      io.ReadCloser
	group     *group
	closedAt  atomic.Int64 // unix ns when the connection ended, 0 while open
	closeCode atomic.Int32 // the server's close code, or -1 for a dropped connection
	received  [maxPhases]atomic.Int64
	done      chan struct{}
	buffer    bytes.Buffer

	writeMu sync.Mutex
	nextID  int64 // request ids of protocols that number their commands (under writeMu)
	pendMu  sync.Mutex
	pending []pendingPublish // publishes sent on this connection, awaiting their reply
}

// pendingPublish is a message published through a client's own connection whose reply
// (published / error) has not come yet; replies come in the order of the publishes.
type pendingPublish struct {
	phase   *phase
	seq     int64
	gi      int
	sent    int64
	members int64
}

// write sends one text frame; safe from any goroutine.
func (c *client) write(data []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.conn.WriteMessage(websocket.TextMessage, data)
}

type group struct {
	name    string
	token   string
	members []*client
	alive   atomic.Int32
	next    atomic.Int64 // round robin over members for publishes through the connections
}

// publisher is the next open member of the group to publish through, round robin.
func (g *group) publisher() *client {
	n := int64(len(g.members))
	for i := int64(0); i < n; i++ {
		c := g.members[(g.next.Add(1)-1)%n]
		if c.closedAt.Load() == 0 {
			return c
		}
	}
	return nil
}

type connectResult struct {
	Connected int            `json:"connected"`
	Failed    int            `json:"failed"`
	Errors    map[string]int `json:"errors"`
	Seconds   float64        `json:"seconds"`
}

// connect opens `members` clients for each group, `concurrency` handshakes at a time.
func (r *runner) connect(groups []groupSpec, concurrency int, timeout time.Duration) connectResult {
	started := time.Now()
	dialer := websocket.Dialer{
		HandshakeTimeout: timeout,
		NetDial: func(network, addr string) (net.Conn, error) {
			return net.DialTimeout(network, addr, timeout)
		},
		ReadBufferSize:  16384,
		WriteBufferSize: 1024,
	}
	if r.setup.Transport == "sse" {
		r.sse = &http.Client{Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: timeout}).DialContext,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   -1,
			DisableCompression:    true,
		}}
	}
	type job struct {
		g   *group
		url string
	}
	jobs := make(chan job)
	var mu sync.Mutex
	result := connectResult{Errors: map[string]int{}}
	var wg sync.WaitGroup
	for i := 0; i < concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				var c *client
				var err error
				if r.setup.Transport == "sse" {
					c, err = r.openSSE(j.g, timeout)
				} else {
					c, err = r.open(&dialer, j.g, j.url, timeout)
				}
				mu.Lock()
				if err != nil {
					result.Failed++
					if len(result.Errors) < 20 {
						result.Errors[shorten(err.Error())]++
					}
				} else {
					result.Connected++
					j.g.members = append(j.g.members, c)
					r.clients = append(r.clients, c)
				}
				mu.Unlock()
			}
		}()
	}
	for _, spec := range groups {
		g := &group{name: spec.Name, token: spec.Token}
		r.groups = append(r.groups, g)
		for i := 0; i < spec.Members; i++ {
			url := r.setup.WSURL
			if len(spec.WSURLs) > 0 {
				url = spec.WSURLs[i%len(spec.WSURLs)]
			}
			jobs <- job{g, url}
		}
	}
	close(jobs)
	wg.Wait()
	result.Seconds = time.Since(started).Seconds()
	return result
}

func (r *runner) open(dialer *websocket.Dialer, g *group, base string, timeout time.Duration) (*client, error) {
	conn, _, err := dialer.Dial(r.proto.url(base, g.name, g.token), nil)
	if err != nil {
		return nil, err
	}
	conn.SetReadDeadline(time.Now().Add(timeout))
	if err := r.proto.subscribe(conn, g.name, g.token); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetReadDeadline(time.Time{})
	c := &client{conn: conn, group: g, done: make(chan struct{}), nextID: 100}
	g.alive.Add(1)
	go r.read(c)
	return c, nil
}

// openSSE opens GET /sse?token=..&group=.. and waits for its `subscribed` event.
func (r *runner) openSSE(g *group, timeout time.Duration) (*client, error) {
	target := fmt.Sprintf("%s?token=%s&group=%s", r.setup.SSEURL, url.QueryEscape(g.token),
		url.QueryEscape(g.name))
	response, err := r.sse.Get(target)
	if err != nil {
		return nil, err
	}
	if response.StatusCode != http.StatusOK {
		payload, _ := io.ReadAll(io.LimitReader(response.Body, 300))
		response.Body.Close()
		return nil, fmt.Errorf("HTTP %d %s", response.StatusCode, bytes.TrimSpace(payload))
	}
	reader := bufio.NewReaderSize(response.Body, 16384)
	timer := time.AfterFunc(timeout, func() { response.Body.Close() })
	event := ""
	for {
		line, err := reader.ReadSlice('\n')
		if err != nil {
			timer.Stop()
			response.Body.Close()
			return nil, fmt.Errorf("before subscribed: %w", err)
		}
		if value, ok := sseField(line, "event"); ok {
			event = string(value)
		} else if _, ok := sseField(line, "data"); ok && event == "subscribed" {
			break
		}
	}
	if !timer.Stop() {
		return nil, errors.New("no subscribed event in time")
	}
	c := &client{body: response.Body, group: g, done: make(chan struct{})}
	g.alive.Add(1)
	go r.readSSE(c, reader)
	return c, nil
}

// sseField returns the value of a `name: value` line.
func sseField(line []byte, name string) ([]byte, bool) {
	if len(line) <= len(name) || string(line[:len(name)]) != name || line[len(name)] != ':' {
		return nil, false
	}
	return bytes.TrimSpace(line[len(name)+1:]), true
}

// onMessage is what a reader does with one benchmark message of `phase`.
func (r *runner) onMessage(c *client) func(phase, seq, sent int64) {
	return func(phase, seq, sent int64) {
		now := time.Now().UnixNano()
		if phase < 0 || phase >= maxPhases {
			return
		}
		p := r.phases[phase].Load()
		if p == nil {
			return
		}
		if p.reported.Load() {
			r.late.Add(1)
			return
		}
		c.received[phase].Add(1)
		p.received(seq, now, now-sent)
	}
}

func (c *client) ended(code int32) {
	c.closeCode.Store(code)
	c.closedAt.Store(time.Now().UnixNano())
	c.group.alive.Add(-1)
	c.failPending("connection closed")
}

// read receives until the connection ends, recording each benchmark message.
func (r *runner) read(c *client) {
	defer close(c.done)
	onMessage := r.onMessage(c)
	onReply := func(why string) { c.replied(why) }
	for {
		kind, reader, err := c.conn.NextReader()
		if err != nil {
			code := int32(-1)
			var closeErr *websocket.CloseError
			if errors.As(err, &closeErr) {
				code = int32(closeErr.Code)
			}
			c.ended(code)
			return
		}
		if kind != websocket.TextMessage && kind != websocket.BinaryMessage {
			continue
		}
		data, err := readAll(reader, &c.buffer)
		if err != nil {
			continue
		}
		r.proto.frame(c, data, onMessage, onReply)
	}
}

// readSSE parses the event stream: `data:` lines of `message` events carry the
// benchmark payload; an `event: close` carries the code the server ended the stream with.
func (r *runner) readSSE(c *client, reader *bufio.Reader) {
	defer close(c.done)
	onMessage := r.onMessage(c)
	event := ""
	code := int32(-1)
	for {
		line, err := reader.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// a line longer than the buffer: not one of ours, skip the rest of it
			for err == bufio.ErrBufferFull {
				_, err = reader.ReadSlice('\n')
			}
			continue
		}
		if err != nil {
			c.ended(code)
			return
		}
		if value, ok := sseField(line, "event"); ok {
			event = string(value)
		} else if value, ok := sseField(line, "data"); ok {
			switch event {
			case "message":
				eachMessage(value, onMessage)
			case "close":
				if i := bytes.Index(value, []byte(`"code":`)); i >= 0 {
					n, _ := parseInt(value[i+len(`"code":`):])
					code = int32(n)
				}
			}
		} else if len(bytes.TrimSpace(line)) == 0 {
			event = ""
		}
	}
}

// replied takes the oldest publish awaiting a reply on this connection: accepted when
// `why` is empty, refused otherwise.
func (c *client) replied(why string) {
	c.pendMu.Lock()
	if len(c.pending) == 0 {
		c.pendMu.Unlock()
		return
	}
	sent := c.pending[0]
	c.pending = c.pending[1:]
	c.pendMu.Unlock()
	sent.phase.replied(sent, why)
}

// failPending refuses every publish still awaiting a reply (the connection ended).
func (c *client) failPending(why string) {
	c.pendMu.Lock()
	pending := c.pending
	c.pending = nil
	c.pendMu.Unlock()
	for _, sent := range pending {
		sent.phase.replied(sent, why)
	}
}

// closeAll says goodbye (1000) to every open client and waits for the sockets to end.
func (r *runner) closeAll(wait time.Duration) int {
	deadline := time.Now().Add(time.Second)
	for _, c := range r.clients {
		if c.closedAt.Load() != 0 {
			continue
		}
		if c.conn != nil {
			c.conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bench done"), deadline)
		} else {
			c.body.Close()
		}
	}
	timeout := time.After(wait)
waiting:
	for _, c := range r.clients {
		select {
		case <-c.done:
		case <-timeout:
			break waiting
		}
	}
	for _, c := range r.clients {
		if c.conn != nil {
			c.conn.Close()
		} else {
			c.body.Close()
		}
	}
	closed := len(r.clients)
	r.clients = nil
	r.groups = nil
	return closed
}

func shorten(s string) string {
	if len(s) > 160 {
		return s[:160]
	}
	return s
}

// readAll reads one frame into the client's reused buffer.
func readAll(reader io.Reader, buffer *bytes.Buffer) ([]byte, error) {
	buffer.Reset()
	_, err := buffer.ReadFrom(reader)
	return buffer.Bytes(), err
}
