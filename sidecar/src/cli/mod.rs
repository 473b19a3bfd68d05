//! The helper subcommands: `verify-dns`, `status`, `identity`.

pub mod identity;
pub mod status;
pub mod verify_dns;
