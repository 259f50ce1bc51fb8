package conv

import (
	"fmt"
	"strconv"
	"sync"
	"time"
)

// ID is a 64-bit time-ordered identifier. The type parameter is a phantom
// that makes TenantID, MessageID, … distinct types sharing one
// implementation. In JSON and text an ID is a decimal string, because
// JavaScript numbers and Redis sorted-set scores hold only 53 bits.
type ID[K any] int64

// IsZero reports whether the id is unset.
func (id ID[K]) IsZero() bool { return id == 0 }

// String renders the id as a decimal string.
func (id ID[K]) String() string { return strconv.FormatInt(int64(id), 10) }

// MarshalText renders the id as decimal text; encoding/json then quotes it.
func (id ID[K]) MarshalText() ([]byte, error) {
	return strconv.AppendInt(nil, int64(id), 10), nil
}

// AppendText appends the id as decimal text (encoding.TextAppender): an
// encoder that knows it renders an id without allocating.
func (id ID[K]) AppendText(b []byte) ([]byte, error) {
	return strconv.AppendInt(b, int64(id), 10), nil
}

// UnmarshalText parses a decimal id. Empty text is the zero id.
func (id *ID[K]) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*id = 0
		return nil
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || v < 0 {
		return fmt.Errorf("%w: id %q is not a non-negative decimal integer", ErrInvalid, Shorten(string(b), 32))
	}
	*id = ID[K](v)
	return nil
}

// ParseID parses a decimal id of any kind: conv.ParseID[conv.TenantID]("42").
func ParseID[T ~int64](s string) (T, error) {
	var id ID[struct{}]
	err := id.UnmarshalText([]byte(s))
	return T(id), err
}

// Phantom kinds. Unexported so that only this package names new id kinds.
type (
	tenantKind       struct{}
	channelKind      struct{}
	contactKind      struct{}
	conversationKind struct{}
	messageKind      struct{}
	agentKind        struct{}
	groupKind        struct{}
	tokenKind        struct{}
	visitorKind      struct{}
)

// Typed ids.
type (
	TenantID       = ID[tenantKind]
	ChannelID      = ID[channelKind]
	ContactID      = ID[contactKind]
	ConversationID = ID[conversationKind]
	MessageID      = ID[messageKind]
	AgentID        = ID[agentKind]
	GroupID        = ID[groupKind]
	TokenID        = ID[tokenKind]
	VisitorID      = ID[visitorKind]
)

// Snowflake layout: 41 bits of milliseconds since Epoch, 10 bits of node,
// 12 bits of per-millisecond sequence. The top bit stays 0 so ids are
// positive int64s that sort by creation time across nodes.
const (
	nodeBits = 10
	seqBits  = 12
	// MaxNode is the largest node id an IDGen accepts.
	MaxNode = 1<<nodeBits - 1
)

// Epoch is the zero time of generated ids (2024-01-01 UTC); ids run out in 2093.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// IDGen makes snowflake ids. It is safe for concurrent use. Two processes
// must not share a node id: that is what --node-id is for.
type IDGen struct {
	mu   sync.Mutex
	node int64
	last int64 // ms since Epoch of the last id
	seq  int64
	now  func() time.Time
}

// NewIDGen returns a generator for node (0..MaxNode).
func NewIDGen(node int) (*IDGen, error) {
	if node < 0 || node > MaxNode {
		return nil, fmt.Errorf("%w: node id %d outside 0..%d", ErrInvalid, node, MaxNode)
	}
	return &IDGen{node: int64(node), now: time.Now}, nil
}

// Next returns a new id. If the clock steps back, ids keep increasing by
// borrowing from the last timestamp rather than repeating.
func (g *IDGen) Next() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := g.now().Sub(Epoch).Milliseconds()
	if ms <= g.last {
		g.seq++
		if g.seq >= 1<<seqBits {
			g.last++
			g.seq = 0
		}
	} else {
		g.last = ms
		g.seq = 0
	}
	return g.last<<(nodeBits+seqBits) | g.node<<seqBits | g.seq
}

// NewID returns a new typed id from g: conv.NewID[conv.MessageID](ids).
func NewID[T ~int64](g *IDGen) T { return T(g.Next()) }

// Time returns the creation time encoded in a generated id.
func (id ID[K]) Time() time.Time {
	return Epoch.Add(time.Duration(int64(id)>>(nodeBits+seqBits)) * time.Millisecond)
}
