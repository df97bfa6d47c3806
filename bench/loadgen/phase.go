package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// maxMessages bounds one phase's publishes (and the closed-loop bookkeeping).
const maxMessages = 1 << 20

type phaseSpec struct {
	ID             int     `json:"id"`
	Mode           string  `json:"mode"` // "rate": fixed rate per group; "closed": window of messages in flight
	RatePerGroup   float64 `json:"rate_per_group"`
	DurationS      float64 `json:"duration_s"`
	Window         int     `json:"window"`
	Concurrency    int     `json:"concurrency"`
	DrainS         float64 `json:"drain_s"`
	StallS         float64 `json:"stall_s"`
	MessageTimeout float64 `json:"message_timeout_s"`
	// Publish is "http" (the system's HTTP publish endpoint) or "ws" (each message sent
	// by a member of its group through its own connection, members taking turns).
	Publish string `json:"publish"`
}

// phase is one stretch of publishing and everything its messages did.
type phase struct {
	spec           phaseSpec
	runner         *runner
	started        int64
	latency        histogram
	publishLatency histogram
	receivedTotal  atomic.Int64
	lastReceive    atomic.Int64
	expected       atomic.Int64
	skipped        atomic.Int64
	timedOut       atomic.Int64
	nextSeq        atomic.Int64
	awaiting       atomic.Int64 // publishes through connections still awaiting their reply
	reported       atomic.Bool  // set once its report is made; later arrivals count as late

	remaining []atomic.Int32 // closed loop: deliveries still awaited per seq
	slots     chan struct{}
	inflight  map[int64]int64
	inflightM sync.Mutex

	mu          sync.Mutex
	published   [][]int64 // per group: publish start (unix ns) of every accepted message
	errorsByWhy map[string]int
	publishedOK int64
}

// received is called by a reader for every benchmark message of this phase.
func (p *phase) received(seq, now, latencyNs int64) {
	p.latency.record(latencyNs / 1000)
	p.receivedTotal.Add(1)
	p.lastReceive.Store(now)
	if p.remaining != nil && seq >= 0 && seq < maxMessages {
		if p.remaining[seq].Add(-1) == 0 {
			p.release(seq)
		}
	}
}

func (p *phase) release(seq int64) {
	p.inflightM.Lock()
	_, ok := p.inflight[seq]
	delete(p.inflight, seq)
	p.inflightM.Unlock()
	if ok {
		p.slots <- struct{}{}
	}
}

func (r *runner) runPhase(spec phaseSpec) map[string]any {
	p := &phase{spec: spec, runner: r, errorsByWhy: map[string]int{}}
	p.published = make([][]int64, len(r.groups))
	if spec.Mode == "closed" {
		p.remaining = r.remaining
		for i := range p.remaining {
			p.remaining[i].Store(0)
		}
		p.inflight = map[int64]int64{}
		p.slots = make(chan struct{}, spec.Window)
		for i := 0; i < spec.Window; i++ {
			p.slots <- struct{}{}
		}
	}
	alive := 0
	for _, g := range r.groups {
		alive += int(g.alive.Load())
	}
	r.phases[spec.ID].Store(p)
	p.started = time.Now().UnixNano()
	end := time.Now().Add(time.Duration(spec.DurationS * float64(time.Second)))
	if spec.Mode == "closed" {
		p.closedLoop(end)
	} else {
		p.fixedRate(end)
	}
	publishEnd := time.Now()
	drained := p.drain()
	finished := time.Now().UnixNano()
	p.reported.Store(true)
	report := p.report(alive, publishEnd, drained, finished)
	// Messages of earlier phases that arrived after their phase's report: a delivery
	// reported there as lost that did arrive, late.
	report["late_from_earlier_phases"] = r.late.Swap(0)
	return report
}

// fixedRate publishes RatePerGroup messages per second to every group, round robin.
// A tick that finds every publisher busy is skipped and counted, never queued.
func (p *phase) fixedRate(end time.Time) {
	groups := len(p.runner.groups)
	total := p.spec.RatePerGroup * float64(groups)
	interval := time.Duration(float64(time.Second) / total)
	jobs := make(chan int64, p.spec.Concurrency)
	var wg sync.WaitGroup
	for i := 0; i < p.spec.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range jobs {
				p.publish(seq)
			}
		}()
	}
	start := time.Now()
	for k := int64(0); k < maxMessages; k++ {
		at := start.Add(time.Duration(k) * interval)
		if !at.Before(end) {
			break
		}
		time.Sleep(time.Until(at))
		select {
		case jobs <- k:
		default:
			p.skipped.Add(1)
		}
	}
	close(jobs)
	wg.Wait()
}

// closedLoop keeps Window messages in flight: a message leaves the window when every
// member alive at its publish received it, or after MessageTimeout.
func (p *phase) closedLoop(end time.Time) {
	groups := int64(len(p.runner.groups))
	stop := make(chan struct{})
	go p.sweep(stop)
	ended := make(chan struct{})
	timer := time.AfterFunc(time.Until(end), func() { close(ended) })
	defer timer.Stop()
	var wg sync.WaitGroup
	for i := 0; i < p.spec.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-p.slots:
				case <-ended:
					return
				}
				if !time.Now().Before(end) {
					p.slots <- struct{}{}
					return
				}
				seq := p.nextSeq.Add(1) - 1
				if seq >= maxMessages {
					return
				}
				g := p.runner.groups[seq%groups]
				members := g.alive.Load()
				p.remaining[seq].Store(members)
				p.inflightM.Lock()
				p.inflight[seq] = time.Now().UnixNano()
				p.inflightM.Unlock()
				if !p.publishTo(seq, int(seq%groups)) || members == 0 {
					p.release(seq)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
}

func (p *phase) sweep(stop chan struct{}) {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	timeout := int64(p.spec.MessageTimeout * float64(time.Second))
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
		}
		now := time.Now().UnixNano()
		var expired []int64
		p.inflightM.Lock()
		for seq, at := range p.inflight {
			if now-at > timeout {
				expired = append(expired, seq)
			}
		}
		p.inflightM.Unlock()
		for _, seq := range expired {
			p.timedOut.Add(1)
			p.release(seq)
		}
	}
}

func (p *phase) publish(seq int64) {
	p.publishTo(seq, int(seq%int64(len(p.runner.groups))))
}

// publishTo sends message `seq` to group index gi, over HTTP or through a member's
// connection; false when it was not sent (or refused).
func (p *phase) publishTo(seq int64, gi int) bool {
	if p.spec.Publish == "ws" {
		return p.publishThrough(seq, gi)
	}
	return p.publishHTTP(seq, gi)
}

// publishThrough sends message `seq` from the next member of the group over its own
// WebSocket. With a protocol that replies, the message is accepted (expected by the
// members) when its reply comes, and publish latency is the time to that reply;
// otherwise it is accepted once written.
func (p *phase) publishThrough(seq int64, gi int) bool {
	r := p.runner
	g := r.groups[gi]
	c := g.publisher()
	if c == nil || c.conn == nil {
		p.refused("no open member to publish through")
		return false
	}
	members := int64(g.alive.Load())
	c.writeMu.Lock()
	started := time.Now()
	data := fmt.Sprintf(`{"bp":%d,"bs":%d,"bt":%d,"x":"%s"}`, p.spec.ID, seq, started.UnixNano(), r.padding)
	frame, replies := r.proto.publishFrame(c, g.name, data)
	if frame == nil {
		c.writeMu.Unlock()
		p.refused("the protocol has no client publish")
		return false
	}
	if replies {
		p.awaiting.Add(1)
		c.pendMu.Lock()
		c.pending = append(c.pending, pendingPublish{phase: p, seq: seq, gi: gi, sent: started.UnixNano(), members: members})
		c.pendMu.Unlock()
	}
	err := c.conn.WriteMessage(websocket.TextMessage, frame)
	c.writeMu.Unlock()
	if err != nil {
		if replies {
			c.failPending(shorten(err.Error()))
		} else {
			p.refused(shorten(err.Error()))
		}
		return false
	}
	if !replies {
		p.accept(gi, started.UnixNano(), members)
	}
	return true
}

// replied settles a publish sent through a connection: accepted, or refused and out of
// the closed loop's window.
func (p *phase) replied(sent pendingPublish, why string) {
	defer p.awaiting.Add(-1)
	if p.reported.Load() {
		return
	}
	if why != "" {
		p.refused(why)
		if p.remaining != nil {
			p.release(sent.seq)
		}
		return
	}
	p.publishLatency.record((time.Now().UnixNano() - sent.sent) / 1000)
	p.accept(sent.gi, sent.sent, sent.members)
}

func (p *phase) refused(why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errorsByWhy) < 20 {
		p.errorsByWhy[why]++
	} else {
		p.errorsByWhy["other"]++
	}
}

func (p *phase) accept(gi int, started int64, members int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.publishedOK++
	p.published[gi] = append(p.published[gi], started)
	p.expected.Add(members)
}

// publishHTTP sends message `seq` to group index gi over the system's HTTP publish API.
func (p *phase) publishHTTP(seq int64, gi int) bool {
	r := p.runner
	g := r.groups[gi]
	members := int64(g.alive.Load())
	started := time.Now()
	data := fmt.Sprintf(`{"bp":%d,"bs":%d,"bt":%d,"x":"%s"}`, p.spec.ID, seq, started.UnixNano(), r.padding)
	body := fmt.Sprintf(`{"%s":"%s","data":%s}`, r.setup.GroupKey, g.name, data)
	request, _ := http.NewRequest("POST", r.setup.PublishURL, strings.NewReader(body))
	request.Header.Set("Content-Type", "application/json")
	for k, v := range r.setup.PublishHeaders {
		request.Header.Set(k, v)
	}
	response, err := r.http.Do(request)
	why := ""
	if err != nil {
		why = shorten(err.Error())
	} else {
		payload, _ := io.ReadAll(response.Body)
		response.Body.Close()
		if response.StatusCode/100 != 2 {
			why = fmt.Sprintf("HTTP %d %s", response.StatusCode, shorten(string(bytes.TrimSpace(payload))))
		}
	}
	p.publishLatency.record(time.Since(started).Microseconds())
	if why != "" {
		p.refused(why)
		return false
	}
	p.accept(gi, started.UnixNano(), members)
	return true
}

// drain waits for the deliveries still on their way: until all expected arrived, nothing
// arrived for StallS, or DrainS passed. Returns whether everything expected arrived.
func (p *phase) drain() bool {
	deadline := time.Now().Add(time.Duration(p.spec.DrainS * float64(time.Second)))
	stall := time.Duration(p.spec.StallS * float64(time.Second))
	last := p.receivedTotal.Load()
	progressed := time.Now()
	for time.Now().Before(deadline) {
		got := p.receivedTotal.Load()
		if got >= p.expected.Load() && p.awaiting.Load() == 0 {
			return true
		}
		if got != last {
			last, progressed = got, time.Now()
		} else if time.Since(progressed) > stall {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// report accounts for every expected delivery client by client: received, missed by a
// client the server closed with 4008 (recoverable by offset), or lost.
func (p *phase) report(aliveAtStart int, publishEnd time.Time, drained bool, finished int64) map[string]any {
	r := p.runner
	id := p.spec.ID
	for _, times := range p.published {
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	}
	var delivered, lost, lostClosed, missed4008, unexpected int64
	closedBy := map[string]int{}
	for gi, g := range r.groups {
		times := p.published[gi]
		for _, c := range g.members {
			expected := int64(len(times))
			closedAt := c.closedAt.Load()
			if closedAt != 0 {
				expected = int64(sort.Search(len(times), func(i int) bool { return times[i] >= closedAt }))
				if closedAt >= p.started {
					closedBy[fmt.Sprint(c.closeCode.Load())]++
				}
			}
			got := c.received[id].Load()
			if got > expected {
				unexpected += got - expected
				got = expected
			}
			delivered += got
			missing := expected - got
			switch {
			case missing == 0:
			case closedAt != 0 && c.closeCode.Load() == 4008:
				missed4008 += missing
			case closedAt != 0:
				lostClosed += missing
			default:
				lost += missing
			}
		}
	}
	activeNs := p.lastReceive.Load() - p.started
	if activeNs <= 0 {
		activeNs = finished - p.started
	}
	window := publishEnd.Sub(time.Unix(0, p.started)).Seconds()
	return map[string]any{
		"phase":                  id,
		"mode":                   p.spec.Mode,
		"publish_via":            p.spec.Publish,
		"publish_unanswered":     p.awaiting.Load(),
		"rate_per_group":         p.spec.RatePerGroup,
		"window":                 p.spec.Window,
		"clients_alive_at_start": aliveAtStart,
		"publish_window_s":       window,
		"active_s":               float64(activeNs) / 1e9,
		"wall_s":                 float64(finished-p.started) / 1e9,
		"published":              p.publishedOK,
		"publish_rate":           float64(p.publishedOK) / window,
		"publish_errors":         p.errorsByWhy,
		"publish_skipped":        p.skipped.Load(),
		"expected":               delivered + lost + lostClosed + missed4008,
		"delivered":              delivered,
		"received_total":         p.receivedTotal.Load(),
		"lost":                   lost + lostClosed,
		"lost_on_open_clients":   lost,
		"lost_on_closed_clients": lostClosed,
		"missed_by_4008_clients": missed4008,
		"unexpected":             unexpected,
		"clients_closed_by_code": closedBy,
		"timed_out_messages":     p.timedOut.Load(),
		"drained":                drained,
		"deliveries_per_s":       float64(p.receivedTotal.Load()) / (float64(activeNs) / 1e9),
		"latency_ms":             p.latency.summary(),
		"publish_latency_ms":     p.publishLatency.summary(),
	}
}
