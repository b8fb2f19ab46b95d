// Package configs holds no code: it is the home of redwire's shipped
// assets (example configurations, Prometheus alerting rules and their
// promtool unit tests, Grafana dashboards) and of the tests that keep them
// true to the agent. Those tests load every example with the agent's own
// loader, run promtool on the rules, and check that every metric name a
// rule or dashboard queries is one a real redwire, scraping a real Redis
// master and replica, pushes.
package configs
