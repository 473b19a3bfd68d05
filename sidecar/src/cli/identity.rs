//! `dig-sidecar identity`: prints the peer id, creating the key if there is none.

use crate::{
    config::IdentityArgs,
    identity::{IdentityError, load_or_create},
};

pub fn peer_id(args: &IdentityArgs) -> Result<String, IdentityError> {
    let keypair = load_or_create(&args.state_dir())?;
    Ok(keypair.public().to_peer_id().to_string())
}
