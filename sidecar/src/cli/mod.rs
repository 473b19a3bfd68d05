//! The helper subcommands: `verify-dns`, `status` (and `status --watch`), `identity`.

pub mod identity;
pub mod status;
pub mod verify_dns;
pub mod watch;
