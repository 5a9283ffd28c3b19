"""The interfaces: REST API, registration RPC, metrics, the web view."""
