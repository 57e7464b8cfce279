//! One SPDY/3.1 connection, the server's side of it (moby's spdystream, as the kubelet's
//! streaming server uses it): the client opens streams, each is answered with a SYN_REPLY and
//! handed to the caller with its headers, a receiver of its data and a writer.
//!
//! Flow control: we grant the peer's data back with WINDOW_UPDATE as it is taken. Our own
//! writes honour the peer's windows once the peer has shown it keeps them (a WINDOW_UPDATE);
//! spdystream, the only SPDY peer a kubelet has, never sends one and never enforces windows,
//! so holding to the initial 64 KiB would stall every exec that prints more.
//!
//! Limits: a connection holds at most [`MAX_STREAMS`] streams (more are refused with
//! RST_STREAM), buffers at most [`INBOUND_FRAMES`] data frames per stream (then stops reading
//! the socket), and a peer that breaks the framing loses its connection, nothing else.

mod dictionary;
pub mod frame;

use bytes::Bytes;
use frame::{Codec, FLAG_FIN, Frame, Headers};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc};
use tokio_util::codec::Framed;

/// Streams one connection may have open at once.
pub const MAX_STREAMS: usize = 64;
/// Data frames buffered per stream before the connection stops reading.
pub const INBOUND_FRAMES: usize = 16;
/// The largest data frame we write.
const MAX_DATA_FRAME: usize = 32 * 1024;
/// SPDY/3's initial stream window.
const INITIAL_WINDOW: i64 = 64 * 1024;

/// A stream the client opened.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    /// What the client writes on it; ends at its FIN or a reset.
    pub incoming: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

/// The stream was reset or the connection is gone.
#[derive(Debug, thiserror::Error)]
#[error("the stream is closed")]
pub struct Closed;

struct StreamState {
    inbound: Option<mpsc::Sender<Bytes>>,
    send_window: i64,
    /// The peer sent its FIN.
    remote_done: bool,
    /// We sent ours; with both, the stream is gone and its slot free.
    local_done: bool,
}

#[derive(Default)]
struct Shared {
    streams: Mutex<HashMap<u32, StreamState>>,
    /// Whether the peer keeps windows (it sent a WINDOW_UPDATE).
    flow_controlled: std::sync::atomic::AtomicBool,
    window_opened: Notify,
}

impl Shared {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<u32, StreamState>> {
        self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Writes one stream's half.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
    out: mpsc::Sender<Frame>,
}

impl StreamWriter {
    /// Sends `data`, in frames of at most 32 KiB, within the peer's window when it keeps one.
    pub async fn write(&self, mut data: &[u8]) -> Result<(), Closed> {
        while !data.is_empty() {
            let n = self.reserve(data.len().min(MAX_DATA_FRAME)).await?;
            let frame = Frame::Data { stream_id: self.id, flags: 0, data: Bytes::copy_from_slice(&data[..n]) };
            self.out.send(frame).await.map_err(|_| Closed)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// How much of `want` may be sent now; waits for the window while it is shut.
    async fn reserve(&self, want: usize) -> Result<usize, Closed> {
        loop {
            let opened = self.shared.window_opened.notified();
            {
                let mut streams = self.shared.streams();
                let state = streams.get_mut(&self.id).filter(|s| !s.local_done).ok_or(Closed)?;
                if !self.shared.flow_controlled.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(want);
                }
                if state.send_window > 0 {
                    let n = want.min(usize::try_from(state.send_window).unwrap_or(usize::MAX));
                    state.send_window -= n as i64;
                    return Ok(n);
                }
            }
            opened.await;
        }
    }

    /// Ends our half of the stream (an empty data frame with FIN).
    pub async fn finish(&self) {
        {
            let mut streams = self.shared.streams();
            let Some(state) = streams.get_mut(&self.id).filter(|s| !s.local_done) else { return };
            state.local_done = true;
            if state.remote_done {
                streams.remove(&self.id);
            }
        }
        let _ = self.out.send(Frame::Data { stream_id: self.id, flags: FLAG_FIN, data: Bytes::new() }).await;
    }
}

/// The server's end of a connection: the streams the client opens arrive on `streams`.
pub struct Connection {
    pub streams: mpsc::Receiver<Stream>,
    out: mpsc::Sender<Frame>,
    last_stream: Arc<std::sync::atomic::AtomicU32>,
    /// Becomes true when the peer is gone (EOF, an error or its GOAWAY).
    gone: tokio::sync::watch::Receiver<bool>,
}

impl Connection {
    /// Serves `io` as a SPDY/3.1 server until the peer goes away or [`Connection::close`].
    pub fn serve<IO>(io: IO) -> Connection
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut sink, mut source) = Framed::new(io, Codec::default()).split();
        let (out, mut to_write) = mpsc::channel::<Frame>(64);
        let (new_streams, streams) = mpsc::channel::<Stream>(MAX_STREAMS);
        let shared = Arc::new(Shared::default());
        let last_stream = Arc::new(std::sync::atomic::AtomicU32::new(0));
        tokio::spawn(async move {
            while let Some(frame) = to_write.recv().await {
                let goaway = matches!(frame, Frame::GoAway { .. });
                if sink.feed(frame).await.is_err() {
                    break;
                }
                // Write what is queued in one go.
                while let Ok(more) = to_write.try_recv() {
                    if sink.feed(more).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() || goaway {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader = Reader { shared, out: out.clone(), new_streams, last_stream: last_stream.clone() };
        let (peer_gone, gone) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Some(frame) = source.next().await {
                match frame {
                    Ok(frame) => {
                        if reader.handle(frame).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::debug!("SPDY connection: {e}");
                        let last = reader.last_stream.load(std::sync::atomic::Ordering::Relaxed);
                        let _ = reader.out.send(Frame::GoAway { last_good_stream_id: last, status: frame::PROTOCOL_ERROR }).await;
                        break;
                    }
                }
            }
            // The peer is gone: every stream's reader sees the end.
            reader.shared.streams().clear();
            reader.shared.window_opened.notify_waiters();
            let _ = peer_gone.send(true);
        });
        Connection { streams, out, last_stream, gone }
    }

    /// Waits until the peer is gone: a command that only writes learns so here.
    pub async fn gone(&mut self) {
        let _ = self.gone.wait_for(|gone| *gone).await;
    }

    /// Says GOAWAY and closes the connection once what was written is sent.
    pub async fn close(self) {
        let last = self.last_stream.load(std::sync::atomic::Ordering::Relaxed);
        let _ = self.out.send(Frame::GoAway { last_good_stream_id: last, status: 0 }).await;
    }
}

struct Reader {
    shared: Arc<Shared>,
    out: mpsc::Sender<Frame>,
    new_streams: mpsc::Sender<Stream>,
    last_stream: Arc<std::sync::atomic::AtomicU32>,
}

/// The connection ends.
struct GoneAway;

impl Reader {
    async fn send(&self, frame: Frame) -> Result<(), GoneAway> {
        self.out.send(frame).await.map_err(|_| GoneAway)
    }

    async fn handle(&self, frame: Frame) -> Result<(), GoneAway> {
        match frame {
            Frame::SynStream { stream_id, flags, headers, .. } => {
                let last = self.last_stream.load(std::sync::atomic::Ordering::Relaxed);
                // Client streams are odd and increasing.
                if stream_id % 2 == 0 || stream_id <= last {
                    return self.send(Frame::RstStream { stream_id, status: frame::PROTOCOL_ERROR }).await;
                }
                self.last_stream.store(stream_id, std::sync::atomic::Ordering::Relaxed);
                if self.shared.streams().len() >= MAX_STREAMS {
                    return self.send(Frame::RstStream { stream_id, status: frame::REFUSED_STREAM }).await;
                }
                let (tx, incoming) = mpsc::channel(INBOUND_FRAMES);
                let remote_done = flags & FLAG_FIN != 0;
                let inbound = (!remote_done).then_some(tx);
                self.shared.streams().insert(stream_id, StreamState { inbound, send_window: INITIAL_WINDOW, remote_done, local_done: false });
                self.send(Frame::SynReply { stream_id, flags: 0, headers: Vec::new() }).await?;
                let writer = StreamWriter { id: stream_id, shared: self.shared.clone(), out: self.out.clone() };
                if self.new_streams.try_send(Stream { id: stream_id, headers, incoming, writer }).is_err() {
                    self.shared.streams().remove(&stream_id);
                    return self.send(Frame::RstStream { stream_id, status: frame::REFUSED_STREAM }).await;
                }
                Ok(())
            }
            Frame::Data { stream_id, flags, data } => {
                let inbound = self.shared.streams().get(&stream_id).and_then(|s| s.inbound.clone());
                let len = data.len() as u32;
                if let Some(tx) = inbound {
                    // A reader that went away just drops what comes.
                    if !data.is_empty() && tx.send(data).await.is_ok() && len > 0 {
                        self.send(Frame::WindowUpdate { stream_id, delta: len }).await?;
                    }
                }
                if flags & FLAG_FIN != 0 {
                    self.end_inbound(stream_id);
                }
                Ok(())
            }
            Frame::RstStream { stream_id, .. } => {
                self.shared.streams().remove(&stream_id);
                self.shared.window_opened.notify_waiters();
                Ok(())
            }
            Frame::Settings { entries } => {
                for (_, id, value) in entries {
                    if id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                        let delta = i64::from(value) - INITIAL_WINDOW;
                        self.shared.streams().values_mut().for_each(|s| s.send_window += delta);
                    }
                }
                self.shared.window_opened.notify_waiters();
                Ok(())
            }
            // Answer the peer's pings (odd ids); even ids would answer ours, and we send none.
            Frame::Ping { id } if id % 2 == 1 => self.send(Frame::Ping { id }).await,
            Frame::WindowUpdate { stream_id, delta } => {
                self.shared.flow_controlled.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Some(state) = self.shared.streams().get_mut(&stream_id) {
                    state.send_window = state.send_window.saturating_add(i64::from(delta));
                }
                self.shared.window_opened.notify_waiters();
                Ok(())
            }
            Frame::Headers { stream_id, flags, .. } | Frame::SynReply { stream_id, flags, .. } => {
                if flags & FLAG_FIN != 0 {
                    self.end_inbound(stream_id);
                }
                Ok(())
            }
            Frame::GoAway { .. } => Err(GoneAway),
            Frame::Ping { .. } => Ok(()),
        }
    }

    fn end_inbound(&self, stream_id: u32) {
        let mut streams = self.shared.streams();
        if let Some(state) = streams.get_mut(&stream_id) {
            state.inbound = None;
            state.remote_done = true;
            if state.local_done {
                streams.remove(&stream_id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
