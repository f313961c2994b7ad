package kafkatest

import (
	"net"
	"sync"
)

// ListenClosingConns is a kfake.ListenFn whose listeners, when closed, also
// close every connection they accepted. kfake's RemoveNode closes only the
// broker's listener: without this a client keeps talking to the removed
// broker over its open connection, which then refuses every partition as
// not its leader — and once a broker with the same id is added back on the
// same address, the client never reconnects (its connection never broke).
// A real broker that leaves takes its connections with it.
func ListenClosingConns(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &closingListener{Listener: ln, conns: map[net.Conn]struct{}{}}, nil
}

type closingListener struct {
	net.Listener
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

func (l *closingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[c] = struct{}{}
	return &trackedConn{Conn: c, l: l}, nil
}

func (l *closingListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for c := range l.conns {
		c.Close()
	}
	clear(l.conns)
	return err
}

// trackedConn leaves its listener's set when closed.
type trackedConn struct {
	net.Conn
	l    *closingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c.Conn)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
