// Package jsonenc encodes JSON exactly as encoding/json does (v1
// semantics: the bytes every client and older node expects) with the v2
// encoder of github.com/go-json-experiment/json, which takes about two
// thirds of encoding/json's time on our payloads: it does not re-validate
// and compact what time.Time's MarshalJSON writes, as encoding/json does
// for every timestamp. Hot paths (bus events, timeline entries, socket
// frames) encode through it.
package jsonenc

import (
	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

var v1 = jsonv1.DefaultOptionsV1()

// Marshal returns what encoding/json.Marshal returns for v.
func Marshal(v any) ([]byte, error) { return jsonv2.Marshal(v, v1) }
