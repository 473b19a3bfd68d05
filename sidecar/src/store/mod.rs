//! The local side of replication: which files are stores, their versions and content hashes, the
//! saved index, the folder watcher and the atomic install of downloaded files.

pub mod cdc;
pub mod conflicts;
pub mod disk;
pub mod hash;
pub mod index;
pub mod install;
pub mod journal;
pub mod name;
pub mod part_file;
pub mod record;
pub mod scan;
pub mod version;
pub mod watcher;

pub use hash::{CHUNK_SIZE, ChainingValue, ContentDigest, Hash32};
pub use index::{Content, IndexEntry, LocalMeta, StoreIndex};
pub use name::{is_valid_store_name, store_file_name, store_name_from_file_name};
pub use version::Version;
