//! State the live views keep between requests: the transfer tracker that turns progress samples
//! into rates, and the cap on open event streams.

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::transfers::{Transfer, TransferTracker};

/// Live pages served at once; each costs a snapshot per second.
pub const MAX_EVENT_STREAMS: usize = 16;
/// State shared by the live views: transfer rates and the open event streams.
pub struct LiveViews {
    transfers: Mutex<TransferTracker>,
    streams: Arc<Semaphore>,
}

impl Default for LiveViews {
    fn default() -> Self {
        Self {
            transfers: Mutex::default(),
            streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
        }
    }
}

impl LiveViews {
    /// The downloads in `stores` with their rates (a new sample).
    pub fn transfers(&self, stores: &[Value]) -> Vec<Transfer> {
        self.transfers
            .lock()
            .observe(std::time::Instant::now(), stores)
    }

    /// A slot for one more event stream, or an error when [`MAX_EVENT_STREAMS`] are open.
    pub fn stream_permit(&self) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        self.streams.clone().try_acquire_owned()
    }
}
