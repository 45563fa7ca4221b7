package smtpd

import (
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	sessions prometheus.Counter
	active   prometheus.Gauge
	replies  *prometheus.CounterVec
	refused  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		sessions: prometheus.NewCounter(prometheus.CounterOpts{Name: "clustermail_smtp_sessions_total", Help: "SMTP sessions started."}),
		active:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "clustermail_smtp_connections", Help: "Open SMTP connections."}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clustermail_smtp_replies_total",
			Help: "SMTP replies sent, by code."}, []string{"code"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "clustermail_smtp_connections_refused_total",
			Help: "Connections refused because the connection limit was reached."}),
	}
	reg.MustRegister(m.sessions, m.active, m.replies, m.refused)
	return m
}

// limitListener caps concurrent connections (go-smtp has no limit) and
// wraps each connection to count the reply codes it sends, whoever writes
// them: our backend or go-smtp itself.
type limitListener struct {
	net.Listener
	sem      chan struct{}
	m        *metrics
	hostname string
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			l.m.active.Inc()
			return &countingConn{Conn: c, l: l, bol: true}, nil
		default:
			l.m.refused.Inc()
			go func() {
				_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Write([]byte("421 4.7.0 " + l.hostname + " Too many connections, try again later\r\n"))
				c.Close()
			}()
		}
	}
}

type countingConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
	bol  bool // the next byte written begins a line
	code []byte
}

func (c *countingConn) Write(p []byte) (int, error) {
	for _, b := range p {
		if c.bol {
			c.code = c.code[:0]
			c.bol = false
		}
		if len(c.code) < 4 {
			c.code = append(c.code, b)
			// "250 " ends a reply; "250-" is a continuation line.
			if len(c.code) == 4 && c.code[3] == ' ' {
				if _, err := strconv.Atoi(string(c.code[:3])); err == nil {
					c.l.m.replies.WithLabelValues(string(c.code[:3])).Inc()
				}
			}
		}
		if b == '\n' {
			c.bol = true
		}
	}
	return c.Conn.Write(p)
}

func (c *countingConn) Close() error {
	c.once.Do(func() {
		<-c.l.sem
		c.l.m.active.Dec()
	})
	return c.Conn.Close()
}
