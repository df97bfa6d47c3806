package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

const maxPhases = 64

// client is one subscriber WebSocket; only its reader goroutine touches conn's read side.
type client struct {
	conn      *websocket.Conn
	group     *group
	closedAt  atomic.Int64 // unix ns when the connection ended, 0 while open
	closeCode atomic.Int32 // the server's close code, or -1 for a dropped connection
	received  [maxPhases]atomic.Int64
	done      chan struct{}
	buffer    bytes.Buffer
}

type group struct {
	name    string
	token   string
	members []*client
	alive   atomic.Int32
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
	type job struct{ g *group }
	jobs := make(chan job)
	var mu sync.Mutex
	result := connectResult{Errors: map[string]int{}}
	var wg sync.WaitGroup
	for i := 0; i < concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				c, err := r.open(&dialer, j.g, timeout)
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
			jobs <- job{g}
		}
	}
	close(jobs)
	wg.Wait()
	result.Seconds = time.Since(started).Seconds()
	return result
}

func (r *runner) open(dialer *websocket.Dialer, g *group, timeout time.Duration) (*client, error) {
	conn, _, err := dialer.Dial(r.proto.url(r.setup.WSURL, g.name, g.token), nil)
	if err != nil {
		return nil, err
	}
	conn.SetReadDeadline(time.Now().Add(timeout))
	if err := r.proto.subscribe(conn, g.name, g.token); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetReadDeadline(time.Time{})
	c := &client{conn: conn, group: g, done: make(chan struct{})}
	g.alive.Add(1)
	go r.read(c)
	return c, nil
}

// read receives until the connection ends, recording each benchmark message.
func (r *runner) read(c *client) {
	defer close(c.done)
	onMessage := func(phase, seq, sent int64) {
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
	for {
		kind, reader, err := c.conn.NextReader()
		if err != nil {
			code := int32(-1)
			var closeErr *websocket.CloseError
			if errors.As(err, &closeErr) {
				code = int32(closeErr.Code)
			}
			c.closeCode.Store(code)
			c.closedAt.Store(time.Now().UnixNano())
			c.group.alive.Add(-1)
			return
		}
		if kind != websocket.TextMessage && kind != websocket.BinaryMessage {
			continue
		}
		data, err := readAll(reader, &c.buffer)
		if err != nil {
			continue
		}
		r.proto.frame(c.conn, data, onMessage)
	}
}

// closeAll says goodbye (1000) to every open client and waits for the sockets to end.
func (r *runner) closeAll(wait time.Duration) int {
	deadline := time.Now().Add(time.Second)
	for _, c := range r.clients {
		if c.closedAt.Load() == 0 {
			c.conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bench done"), deadline)
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
		c.conn.Close()
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
