//! DIG Network node: identity, discovery, replication and the HTTP API.
