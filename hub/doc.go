// Package hub connects connectors and core through the bus: topic names,
// the wire encoding of envelopes, events, outbound work and delivery
// reports, the bus handlers that feed core, and the registry of channel
// kinds. Connectors import hub (and conv); core imports neither.
//
// Topics (see hub/bus for the streams behind them):
//
//	inbound            connector → core ingest      conv.Inbound
//	events             core → consumers             EventBatch (a commit's events)
//	outbound.<kind>    core → the kind's connector   conv.Outbound
//	delivery           connector → core              conv.Delivery
//	poison             router → dead-letter sink     anything that failed for good
//
// Every message carries tenant_id, type and correlation_id in its metadata,
// and a deterministic UUID (derived from its natural key), which the bus
// uses to drop republished duplicates within its dedup window.
package hub
