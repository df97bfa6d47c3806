package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/gorilla/websocket"
)

// protocol is how one system's clients open, subscribe and receive.
type protocol interface {
	// url is where a client of `group` connects.
	url(base, group, token string) string
	// subscribe runs once the WebSocket is open and returns when the client is a member.
	subscribe(conn *websocket.Conn, group, token string) error
	// frame handles one frame after subscribing: answers pings, reports messages and,
	// in order, each reply to a publish sent through the connection ("" when accepted).
	frame(c *client, data []byte, message func(phase, seq, sent int64), reply func(why string))
	// publishFrame is the frame that publishes `data` (JSON) to `group` from the client,
	// and whether the system replies to it; nil when the protocol has no such frame.
	publishFrame(c *client, group, data string) ([]byte, bool)
}

func protocolNamed(name string) (protocol, error) {
	switch name {
	case "groupcast":
		return groupcastProtocol{token: true}, nil
	case "ceiling":
		return groupcastProtocol{token: false}, nil
	case "stock":
		return stockProtocol{}, nil
	case "socketio":
		return socketioProtocol{}, nil
	case "centrifugo":
		return centrifugoProtocol{}, nil
	}
	return nil, fmt.Errorf("unknown protocol %q", name)
}

// readUntil reads frames until `done` says the awaited reply came (or an error frame).
func readUntil(conn *websocket.Conn, done func([]byte) (bool, error)) error {
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		ok, err := done(data)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
	}
}

// groupcast: {"type":"subscribe","group":g} → {"type":"subscribed",...}; the ceiling
// server speaks the same frames without a token.
type groupcastProtocol struct{ token bool }

func (p groupcastProtocol) url(base, group, token string) string {
	if !p.token {
		return base
	}
	return base + "?token=" + url.QueryEscape(token)
}

func (groupcastProtocol) subscribe(conn *websocket.Conn, group, token string) error {
	frame := fmt.Sprintf(`{"type":"subscribe","group":%q}`, group)
	if err := conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		return err
	}
	return readUntil(conn, func(data []byte) (bool, error) {
		if bytes.Contains(data, []byte(`"type":"subscribed"`)) {
			return true, nil
		}
		if bytes.Contains(data, []byte(`"type":"error"`)) {
			return false, errors.New(string(data))
		}
		return false, nil
	})
}

func (groupcastProtocol) frame(c *client, data []byte, message func(int64, int64, int64), reply func(string)) {
	eachMessage(data, message)
	// {"type":"published",...} or {"type":"error","code":...}: one frame per WebSocket message
	if bytes.Contains(data, []byte(`"type":"published"`)) {
		reply("")
	} else if bytes.Contains(data, []byte(`"type":"error"`)) {
		reply("error frame " + shorten(string(data)))
	}
}

func (groupcastProtocol) publishFrame(c *client, group, data string) ([]byte, bool) {
	return []byte(fmt.Sprintf(`{"type":"publish","group":%q,"data":%s}`, group, data)), true
}

// stock Channels: the consumer joins the group named in the query string before it
// accepts, so an open socket is a member.
type stockProtocol struct{}

func (stockProtocol) url(base, group, token string) string {
	return base + "?group=" + url.QueryEscape(group)
}

func (stockProtocol) subscribe(conn *websocket.Conn, group, token string) error { return nil }

func (stockProtocol) frame(c *client, data []byte, message func(int64, int64, int64), reply func(string)) {
	eachMessage(data, message)
}

// The stock consumer's receive_json group_sends {"type":"publish",...}; it does not reply.
func (stockProtocol) publishFrame(c *client, group, data string) ([]byte, bool) {
	return []byte(fmt.Sprintf(`{"type":"publish","group":%q,"data":%s}`, group, data)), false
}

// Socket.IO v5 over Engine.IO v4, websocket transport only: "0{open}", we send
// `40{"group":g}` (auth, the server enters the room on connect), it answers "40{sid}";
// events are `42["message",{...}]`; Engine.IO pings "2" are answered "3".
type socketioProtocol struct{}

func (socketioProtocol) url(base, group, token string) string {
	return base + "?EIO=4&transport=websocket"
}

func (socketioProtocol) subscribe(conn *websocket.Conn, group, token string) error {
	err := readUntil(conn, func(data []byte) (bool, error) {
		return len(data) > 0 && data[0] == '0', nil
	})
	if err != nil {
		return err
	}
	auth := fmt.Sprintf(`40{"group":%q}`, group)
	if err := conn.WriteMessage(websocket.TextMessage, []byte(auth)); err != nil {
		return err
	}
	return readUntil(conn, func(data []byte) (bool, error) {
		switch {
		case bytes.HasPrefix(data, []byte("40")):
			return true, nil
		case bytes.HasPrefix(data, []byte("44")):
			return false, errors.New(string(data))
		case len(data) == 1 && data[0] == '2':
			return false, conn.WriteMessage(websocket.TextMessage, []byte("3"))
		}
		return false, nil
	})
}

func (socketioProtocol) frame(c *client, data []byte, message func(int64, int64, int64), reply func(string)) {
	if len(data) == 1 && data[0] == '2' {
		c.write([]byte("3"))
		return
	}
	if bytes.HasPrefix(data, []byte("43")) {
		reply("") // the acknowledgement of a "publish" event
		return
	}
	eachMessage(data, message)
}

// A "publish" event with an acknowledgement id, 42<id>["publish",{...}]: the server's
// handler emits the data to the room and the acknowledgement comes back as 43<id>[].
func (socketioProtocol) publishFrame(c *client, group, data string) ([]byte, bool) {
	c.nextID++
	return []byte(fmt.Sprintf(`42%d["publish",{"group":%q,"data":%s}]`, c.nextID, group, data)), true
}

// Centrifugo's JSON protocol: connect command with the JWT, subscribe command, then
// pushes; several replies may share a frame, one per line; "{}" is a ping, answered "{}".
type centrifugoProtocol struct{}

func (centrifugoProtocol) url(base, group, token string) string { return base }

func (centrifugoProtocol) subscribe(conn *websocket.Conn, group, token string) error {
	commands := []string{
		fmt.Sprintf(`{"id":1,"connect":{"token":%q,"name":"bench"}}`, token),
		fmt.Sprintf(`{"id":2,"subscribe":{"channel":%q}}`, group),
	}
	for i, command := range commands {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(command)); err != nil {
			return err
		}
		id := []byte(fmt.Sprintf(`"id":%d`, i+1))
		err := readUntil(conn, func(data []byte) (bool, error) {
			for _, line := range bytes.Split(data, []byte("\n")) {
				if !bytes.Contains(line, id) {
					continue
				}
				if bytes.Contains(line, []byte(`"error"`)) {
					return false, errors.New(strings.TrimSpace(string(line)))
				}
				return true, nil
			}
			return false, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (centrifugoProtocol) frame(c *client, data []byte, message func(int64, int64, int64), reply func(string)) {
	// The ping may share a frame with pushes and replies; missing it gets the client
	// closed (3012). Replies to commands start with their id: {"id":N,"publish":{}}.
	if bytes.Contains(data, []byte("{}")) || bytes.Contains(data, []byte(`{"id":`)) {
		pinged := false
		for _, line := range bytes.Split(data, []byte("\n")) {
			line = bytes.TrimSpace(line)
			switch {
			case bytes.Equal(line, []byte("{}")):
				pinged = true
			case bytes.HasPrefix(line, []byte(`{"id":`)):
				if bytes.Contains(line, []byte(`"error"`)) {
					reply("error reply " + shorten(string(line)))
				} else {
					reply("")
				}
			}
		}
		if pinged {
			c.write([]byte("{}"))
		}
	}
	eachMessage(data, message)
}

// Client-side publish (allowed for subscribers in the bench config), answered by id.
func (centrifugoProtocol) publishFrame(c *client, group, data string) ([]byte, bool) {
	c.nextID++
	return []byte(fmt.Sprintf(`{"id":%d,"publish":{"channel":%q,"data":%s}}`, c.nextID, group, data)), true
}

var (
	keyPhase = []byte(`"bp":`)
	keySeq   = []byte(`"bs":`)
	keySent  = []byte(`"bt":`)
)

// eachMessage finds every benchmark payload {"bp":phase,"bs":seq,"bt":unix ns,...} in a
// frame, whatever envelope and JSON spacing the system put around it.
func eachMessage(data []byte, message func(int64, int64, int64)) {
	for {
		i := bytes.Index(data, keyPhase)
		if i < 0 {
			return
		}
		data = data[i+len(keyPhase):]
		phase, rest := parseInt(data)
		j := bytes.Index(rest, keySeq)
		if j < 0 {
			return
		}
		seq, rest := parseInt(rest[j+len(keySeq):])
		k := bytes.Index(rest, keySent)
		if k < 0 {
			return
		}
		sent, rest := parseInt(rest[k+len(keySent):])
		message(phase, seq, sent)
		data = rest
	}
}

func parseInt(data []byte) (int64, []byte) {
	i := 0
	for i < len(data) && data[i] == ' ' {
		i++
	}
	var n int64
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		n = n*10 + int64(data[i]-'0')
		i++
	}
	return n, data[i:]
}
