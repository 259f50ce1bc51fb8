package jsonenc

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

type sample struct {
	ID      int64             `json:"id,string"`
	Name    string            `json:"name,omitempty"`
	At      time.Time         `json:"at"`
	When    *time.Time        `json:"when,omitempty"`
	Took    time.Duration     `json:"took"`
	Tags    []string          `json:"tags"`
	Meta    map[string]string `json:"meta,omitempty"`
	Raw     json.RawMessage   `json:"raw,omitempty"`
	Ratio   float64           `json:"ratio"`
	HTML    string            `json:"html"`
	Nothing any               `json:"nothing"`
}

// Marshal writes what encoding/json writes, byte for byte, including the
// v1 quirks: nil slices as null, HTML escaped, durations as nanoseconds.
func TestSameBytesAsEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 22, 4, 0, 0, 123456789, time.FixedZone("CST", 8*3600))
	for _, v := range []any{
		sample{},
		sample{ID: math.MaxInt64, Name: "李雷 \u2028", At: at, When: &at, Took: 1500 * time.Millisecond, Tags: []string{"a", ""},
			Meta: map[string]string{"b": "1", "a": "2"}, Raw: json.RawMessage(`{ "x" : 1 }`), Ratio: 1e21, HTML: "<b>&</b>"},
		[]sample{{Ratio: 0.1}},
		map[string]any{"z": 1, "a": []int(nil)},
	} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Marshal(v)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("Marshal(%#v) = %s, %v\nencoding/json:  %s", v, got, err, want)
		}
	}
}
