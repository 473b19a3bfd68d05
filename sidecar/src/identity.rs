//! The node's ed25519 identity, kept in `<state>/identity.key` (protobuf encoding, mode 0600) so
//! that the peer id survives restarts.

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use libp2p::identity::Keypair;

pub const IDENTITY_FILE: &str = "identity.key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("creating state folder {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading identity key {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("identity key {} is not a protobuf-encoded libp2p key: {detail}", path.display())]
    Decode { path: PathBuf, detail: String },
    #[error("writing identity key {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Loads the key from the state folder, or creates and saves a new ed25519 key. A key file that
/// others can read is tightened to 0600.
pub fn load_or_create(state_dir: &Path) -> Result<Keypair, IdentityError> {
    let path = state_dir.join(IDENTITY_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            let keypair =
                Keypair::from_protobuf_encoding(&bytes).map_err(|error| IdentityError::Decode {
                    path: path.clone(),
                    detail: error.to_string(),
                })?;
            let mode = fs::metadata(&path)
                .map_err(|source| IdentityError::Read {
                    path: path.clone(),
                    source,
                })?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "identity key readable by others; setting mode 0600");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(
                    |source| IdentityError::Write {
                        path: path.clone(),
                        source,
                    },
                )?;
            }
            Ok(keypair)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            save(&path, &keypair)?;
            tracing::info!(path = %path.display(), peer_id = %keypair.public().to_peer_id(), "created a new identity");
            Ok(keypair)
        }
        Err(source) => Err(IdentityError::Read { path, source }),
    }
}

/// Writes the key to a temporary file with mode 0600, fsyncs it and renames it into place, so a
/// crash never leaves a half-written key.
fn save(path: &Path, keypair: &Keypair) -> Result<(), IdentityError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|source| IdentityError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|error| IdentityError::Decode {
            path: path.to_path_buf(),
            detail: error.to_string(),
        })?;
    let tmp = path.with_extension("key.tmp");
    let write = |tmp: &Path| -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(tmp, path)?;
        fs::File::open(dir)?.sync_all()
    };
    write(&tmp).map_err(|source| IdentityError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_id_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = load_or_create(&state).unwrap();
        let second = load_or_create(&state).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        assert!(first.clone().try_into_ed25519().is_ok(), "an ed25519 key");
    }

    #[test]
    fn the_key_file_is_private_and_protobuf_encoded() {
        let dir = tempfile::tempdir().unwrap();
        let keypair = load_or_create(dir.path()).unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let decoded = Keypair::from_protobuf_encoding(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(decoded.public(), keypair.public());
        assert!(!dir.path().join("identity.key.tmp").exists());
    }

    #[test]
    fn a_readable_key_is_tightened_to_0600() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        load_or_create(dir.path()).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_corrupt_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        fs::write(&path, b"not a key").unwrap();
        let error = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
    }
}
