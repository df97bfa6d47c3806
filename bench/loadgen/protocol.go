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
	// frame handles one frame after subscribing: answers pings, reports messages.
	frame(conn *websocket.Conn, data []byte, message func(phase, seq, sent int64))
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

func (groupcastProtocol) frame(conn *websocket.Conn, data []byte, message func(int64, int64, int64)) {
	eachMessage(data, message)
}

// stock Channels: the consumer joins the group named in the query string before it
// accepts, so an open socket is a member.
type stockProtocol struct{}

func (stockProtocol) url(base, group, token string) string {
	return base + "?group=" + url.QueryEscape(group)
}

func (stockProtocol) subscribe(conn *websocket.Conn, group, token string) error { return nil }

func (stockProtocol) frame(conn *websocket.Conn, data []byte, message func(int64, int64, int64)) {
	eachMessage(data, message)
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

func (socketioProtocol) frame(conn *websocket.Conn, data []byte, message func(int64, int64, int64)) {
	if len(data) == 1 && data[0] == '2' {
		conn.WriteMessage(websocket.TextMessage, []byte("3"))
		return
	}
	eachMessage(data, message)
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

func (centrifugoProtocol) frame(conn *websocket.Conn, data []byte, message func(int64, int64, int64)) {
	// The ping may share a frame with pushes; missing it gets the client closed (3012).
	if bytes.Contains(data, []byte("{}")) {
		for _, line := range bytes.Split(data, []byte("\n")) {
			if bytes.Equal(bytes.TrimSpace(line), []byte("{}")) {
				conn.WriteMessage(websocket.TextMessage, []byte("{}"))
				break
			}
		}
	}
	eachMessage(data, message)
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
