// Package deploy holds no runtime code. It owns the deployment files beside
// it — the Dockerfile, compose.yaml for a two-node stack on Postgres, Redis
// and NATS, and the Kubernetes manifests in k8s/ — and its test, which
// parses them and checks the invariants that a typo or a half-done edit
// would break silently: every node has a distinct node id, points at the
// services that exist, is probed on the port it listens on, and no master
// key is committed.
//
// It starts no goroutines.
package deploy
