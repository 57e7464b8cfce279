//! A numbered output channel of a WebSocket connection: the channel protocols put the
//! stream's number before each message. [`super::remotecommand`] writes a command's output to
//! it; [`super::websocket`] sends what it queues.

use bytes::Bytes;
use tokio::sync::mpsc;

/// What goes out on the socket.
pub(super) enum Out {
    Data(u8, Bytes),
    Close,
}

/// One numbered output channel of a connection.
pub struct Channel {
    pub(super) number: u8,
    pub(super) out: mpsc::Sender<Out>,
}

impl Channel {
    /// Sends `data` as one message; false when the connection is gone.
    pub async fn write(&self, data: &[u8]) -> bool {
        self.out.send(Out::Data(self.number, Bytes::copy_from_slice(data))).await.is_ok()
    }
}
