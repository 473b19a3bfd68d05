//! DIG Network peer registry: the signed peer record, the REST server and its client.
