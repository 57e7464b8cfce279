//! The WebSocket channel protocols, as the kubelet speaks them (k8s.io/apiserver/pkg/util/wsstream):
//! each message is one channel's data after a channel byte, binary for `channel.k8s.io` and
//! `v4.channel.k8s.io`, or text with the channel as a digit and the data in base64 for the
//! `base64.` variants; a client that names no protocol gets the binary one. [`serve`] moves
//! the messages; [`open`] gives exec and attach their channels (pkg/kubelet/cri/streaming/remotecommand:
//! 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; v4 writes the outcome as a JSON Status), and
//! port-forward numbers its own ([`super::portforward`]). The clients are the ones that reach a
//! node through an API server that passes the upgrade on (the Python client, client-go's
//! WebSocket executor, kube-rs, Kubernetes' e2e tests).

use super::channel::{Channel, Out};
use super::remotecommand::{Options, Output, Streams};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use base64::Engine;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

/// The protocols the kubelet accepts, in no order: the client's order decides.
pub const PROTOCOLS: [&str; 4] = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io"];

/// How long a client has to answer our Close before the connection is dropped.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;

/// The first protocol the client offers of those `supported` (`""`, binary, when it offers
/// none); `None` when it offers only others, which the kubelet refuses with 403.
pub fn negotiate<'a>(offered: impl Iterator<Item = &'a str>, supported: &[&'static str]) -> Option<&'static str> {
    let offered: Vec<&str> = offered.flat_map(|h| h.split(',')).map(str::trim).filter(|p| !p.is_empty()).collect();
    if offered.is_empty() {
        return Some("");
    }
    offered.iter().find_map(|p| supported.iter().find(|s| *s == p).copied())
}

/// A served connection: what the command's streams need, and when the client is gone.
pub struct Session {
    out: mpsc::Sender<Out>,
    gone: watch::Receiver<bool>,
}

impl Session {
    /// Channel `number`'s writer.
    pub fn channel(&self, number: u8) -> Channel {
        Channel { number, out: self.out.clone() }
    }

    /// Resolves when the client has closed the connection or it broke.
    pub async fn gone(&mut self) {
        // An error means the task that watched the socket ended: gone too.
        let _ = self.gone.wait_for(|gone| *gone).await;
    }

    /// Sends a normal close once what was written before has gone out.
    pub async fn close(self) {
        // The connection may be gone already; there is nothing left to tell it.
        let _ = self.out.send(Out::Close).await;
    }
}

/// Serves `socket` with `protocol`, `first` queued before anything else is written: what is
/// written to the [`Session`]'s channels goes out, and what comes in on channel `n` goes to
/// `inputs[n]` (a channel without an input drops it).
pub fn serve(socket: WebSocket, protocol: &str, first: Vec<(u8, Bytes)>, inputs: Vec<Option<mpsc::Sender<Bytes>>>) -> Session {
    let (out_tx, out_rx) = mpsc::channel(64.max(first.len()));
    let (gone_tx, gone_rx) = watch::channel(false);
    for (number, data) in first {
        // The queue was made to hold them all.
        let _ = out_tx.try_send(Out::Data(number, data));
    }
    tokio::spawn(pump(socket, protocol.contains("base64"), out_rx, inputs, gone_tx));
    Session { out: out_tx, gone: gone_rx }
}

/// Serves `socket` with `protocol` for a command with `options`: its [`Streams`], and the
/// [`Session`] that closes it. As the kubelet does, an empty message on the lowest output
/// channel tells the client the streams are ready.
pub fn open(socket: WebSocket, protocol: &'static str, options: Options) -> (Streams, Session) {
    let (stdin_tx, stdin_rx) = mpsc::channel(64);
    let first = if options.stdout {
        STDOUT
    } else if options.stderr {
        STDERR
    } else {
        ERROR
    };
    let session = serve(socket, protocol, vec![(first, Bytes::new())], vec![options.stdin.then_some(stdin_tx)]);
    let channel = |number| Output::WebSocket(session.channel(number));
    let streams = Streams {
        stdin: options.stdin.then_some(stdin_rx),
        stdout: options.stdout.then(|| channel(STDOUT)),
        stderr: options.stderr.then(|| channel(STDERR)),
        error: Some(channel(ERROR)),
        v4: protocol.starts_with("v4."),
    };
    (streams, session)
}

/// Moves messages between the socket and the channels until either side is done.
async fn pump(mut socket: WebSocket, base64: bool, mut out: mpsc::Receiver<Out>, mut inputs: Vec<Option<mpsc::Sender<Bytes>>>, gone: watch::Sender<bool>) {
    loop {
        tokio::select! {
            next = out.recv() => match next {
                Some(Out::Data(number, data)) => {
                    if socket.send(encode(number, &data, base64)).await.is_err() {
                        break;
                    }
                }
                Some(Out::Close) | None => {
                    // The closing handshake: the client's Close comes back, then the
                    // connection ends cleanly (a TLS client sees close_notify, not a cut).
                    if socket.send(Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await.is_ok() {
                        let answered = async { while let Some(Ok(_)) = socket.recv().await {} };
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, answered).await;
                    }
                    break;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(message)) => {
                    if let Some((number, data)) = decode(message, base64)
                        && let Some(input) = inputs.get_mut(usize::from(number))
                        && let Some(tx) = input
                        && tx.send(data).await.is_err()
                    {
                        // Its reader is done: what comes after is dropped.
                        *input = None;
                    }
                }
                // A close, an error or the end: the client is gone.
                _ => break,
            },
        }
    }
    let _ = gone.send(true);
}

fn encode(number: u8, data: &[u8], base64: bool) -> Message {
    if base64 {
        let text = format!("{}{}", char::from(b'0' + number), base64::engine::general_purpose::STANDARD.encode(data));
        Message::Text(text.into())
    } else {
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(number);
        frame.extend_from_slice(data);
        Message::Binary(frame.into())
    }
}

/// A data message's channel and payload; `None` for control messages, empty messages and
/// base64 that does not decode (the kubelet logs and skips those).
fn decode(message: Message, base64: bool) -> Option<(u8, Bytes)> {
    let raw = match message {
        Message::Binary(b) => b,
        Message::Text(t) => Bytes::from(t.as_str().as_bytes().to_vec()),
        _ => return None,
    };
    let (&first, rest) = raw.split_first()?;
    if base64 {
        let data = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        Some((first.checked_sub(b'0')?, Bytes::from(data)))
    } else {
        Some((first, raw.slice(1..)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_first_known_protocol_wins_and_none_means_binary() {
        assert_eq!(negotiate(["v5.channel.k8s.io, v4.channel.k8s.io", "channel.k8s.io"].into_iter(), &PROTOCOLS), Some("v4.channel.k8s.io"));
        assert_eq!(negotiate(["base64.channel.k8s.io"].into_iter(), &PROTOCOLS), Some("base64.channel.k8s.io"));
        assert_eq!(negotiate(std::iter::empty(), &PROTOCOLS), Some(""));
        assert_eq!(negotiate(["v5.channel.k8s.io"].into_iter(), &PROTOCOLS), None, "v5 is the API server's, never a kubelet's");
    }

    #[test]
    fn channels_are_framed_as_wsstream_frames_them() {
        assert_eq!(encode(1, b"hi", false), Message::Binary(Bytes::from_static(b"\x01hi")));
        assert_eq!(encode(2, b"hi", true), Message::Text("2aGk=".into()));
        assert_eq!(decode(Message::Binary(Bytes::from_static(b"\x00ls\n")), false), Some((0, Bytes::from_static(b"ls\n"))));
        assert_eq!(decode(Message::Text("0bHMK".into()), true), Some((0, Bytes::from_static(b"ls\n"))));
        assert_eq!(decode(Message::Text("0!!".into()), true), None);
        assert_eq!(decode(Message::Binary(Bytes::new()), false), None);
        assert_eq!(decode(Message::Ping(Bytes::new()), false), None);
    }
}
