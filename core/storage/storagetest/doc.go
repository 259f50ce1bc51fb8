// Package storagetest is the one conformance suite every storage.Store
// implementation runs (store/sqlite, store/postgres). It pins the contract
// written in the doc comments of storage.Store and storage.Tx, plus the
// decisions those comments leave to the suite, which are stated on the test
// that pins them.
//
// An implementation's test calls Run with a Harness that makes fresh, empty,
// migrated stores. The ingest tests go through storage.Ingest, so they pin
// a store's set-wise path where it has one; RunIngest runs only those, for
// a store that also wants storage.IngestEach checked on its database. The suite brings its own Sealer (AES-256-GCM with key ids,
// standard library only) so that sealing, associated data and key rotation
// are checked without core/secret.
//
// Goroutines: the concurrency tests start a few goroutines and wait for all
// of them before returning; nothing outlives a test.
package storagetest
