//! The shim's end: raised when containerd's Shutdown finds no container left. The serving loop
//! then stops accepting, lets the requests already received be answered, and exits. No timer.

use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn request(&self) {
        self.0.cancel();
    }

    pub fn is_requested(&self) -> bool {
        self.0.is_cancelled()
    }

    pub async fn requested(&self) {
        self.0.cancelled().await;
    }
}
