package wechat

// ClientCount is how many API clients (and token refreshers) c holds.
func ClientCount(c *Connector) int {
	c.clientsMu.Lock()
	defer c.clientsMu.Unlock()
	return len(c.clients)
}
