//go:build !linux

package wspoll

// engine is empty where there is no epoll: every conn is served by a
// goroutine of its own (Conn.readLoop).
type engine struct{}

func (p *Poller) start() error          { return nil }
func (p *Poller) evented(*Conn) bool    { return false }
func (p *Poller) arm(*Conn, bool) error { return nil }
func (p *Poller) disarm(*Conn)          {}
func (p *Poller) schedule(*Conn, bool)  {}
func (p *Poller) stopLoop()             {}
func (p *Poller) stopWorkers() error    { return nil }
