// Package registration announces the agent in etcd under a lease, so a
// central inventory sees which agents are alive, where they listen and
// whether they are degraded, and an agent that dies without a word
// disappears by itself once its lease expires.
//
// Registration is a side channel: an unreachable etcd never blocks the
// agent. A Registrar does everything in the goroutine that calls Run,
// retrying with backoff and saying so once per state change; the agent
// only hands it a State function and calls Changed when the state may
// have changed. It talks to etcd over etcd's JSON gateway
// (etcdgateway.go), not gRPC, to keep gRPC out of an edge agent.
//
// The API is the `registration:` config section (Config, its Validate
// and its defaults), New, Run and Changed; the gateway client is
// internal to the package.
package registration
