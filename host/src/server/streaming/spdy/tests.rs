use super::*;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client on the other end of a duplex pipe, speaking through its own codec.
struct Client {
    io: tokio::io::DuplexStream,
    codec: Codec,
    buf: BytesMut,
}

impl Client {
    async fn send(&mut self, frame: Frame) {
        let mut b = BytesMut::new();
        self.codec.encode_frame(&frame, &mut b);
        self.io.write_all(&b).await.expect("writes");
    }

    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.codec.decode_frame(&mut self.buf).expect("valid frames") {
                return Some(f);
            }
            if self.io.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// The next frame that is not a WINDOW_UPDATE.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            match self.recv().await? {
                Frame::WindowUpdate { .. } => {}
                f => return Some(f),
            }
        }
    }

    async fn open(&mut self, id: u32, kind: &str, flags: u8) {
        let headers = vec![("streamtype".to_string(), kind.to_string())];
        self.send(Frame::SynStream { stream_id: id, associated_to: 0, priority: 0, flags, headers }).await;
    }
}

fn pair() -> (Connection, Client) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (Connection::serve(a), Client { io: b, codec: Codec::default(), buf: BytesMut::new() })
}

#[tokio::test]
async fn a_stream_is_answered_and_carries_data_both_ways() {
    let (mut conn, mut client) = pair();
    client.open(1, "stdin", 0).await;
    assert_eq!(client.next().await, Some(Frame::SynReply { stream_id: 1, flags: 0, headers: vec![] }));
    let mut stream = conn.streams.recv().await.expect("a stream");
    assert_eq!(frame::header(&stream.headers, "streamtype"), Some("stdin"));
    client.send(Frame::Data { stream_id: 1, flags: FLAG_FIN, data: Bytes::from_static(b"hi") }).await;
    assert_eq!(stream.incoming.recv().await.as_deref(), Some(&b"hi"[..]));
    assert_eq!(stream.incoming.recv().await, None, "FIN ends the stream's data");
    // Its data is granted back.
    assert_eq!(client.recv().await, Some(Frame::WindowUpdate { stream_id: 1, delta: 2 }));
    stream.writer.write(b"out").await.expect("writes");
    stream.writer.finish().await;
    assert_eq!(client.next().await, Some(Frame::Data { stream_id: 1, flags: 0, data: Bytes::from_static(b"out") }));
    assert_eq!(client.next().await, Some(Frame::Data { stream_id: 1, flags: FLAG_FIN, data: Bytes::new() }));
    client.send(Frame::Ping { id: 5 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 5 }));
    client.send(Frame::GoAway { last_good_stream_id: 0, status: 0 }).await;
    conn.gone().await;
    conn.close().await;
    assert_eq!(client.next().await, Some(Frame::GoAway { last_good_stream_id: 1, status: 0 }));
    assert_eq!(client.next().await, None, "the connection closes after GOAWAY");
}

#[tokio::test]
async fn a_peer_that_keeps_windows_holds_our_writes_to_them() {
    let (mut conn, mut client) = pair();
    client.open(1, "stdout", FLAG_FIN).await;
    client.next().await;
    let stream = conn.streams.recv().await.expect("a stream");
    // A small window: the peer keeps windows from its first WINDOW_UPDATE on.
    client.send(Frame::Settings { entries: vec![(0, frame::SETTINGS_INITIAL_WINDOW_SIZE, 10)] }).await;
    client.send(Frame::WindowUpdate { stream_id: 1, delta: 0 }).await;
    tokio::task::yield_now().await;
    let writer = stream.writer.clone();
    let writing = tokio::spawn(async move { writer.write(&[b'x'; 25]).await });
    let mut got = 0;
    while got < 10 {
        let Some(Frame::Data { data, .. }) = client.next().await else { panic!("data") };
        got += data.len();
    }
    assert_eq!(got, 10, "no more than the window");
    assert!(!writing.is_finished());
    client.send(Frame::WindowUpdate { stream_id: 1, delta: 100 }).await;
    let Some(Frame::Data { data, .. }) = client.next().await else { panic!("data") };
    assert_eq!(data.len(), 15);
    writing.await.expect("joins").expect("writes");
}

#[tokio::test]
async fn a_reset_stream_refuses_writes_and_ends_its_data() {
    let (mut conn, mut client) = pair();
    client.open(1, "stdin", 0).await;
    client.next().await;
    let mut stream = conn.streams.recv().await.expect("a stream");
    client.send(Frame::RstStream { stream_id: 1, status: 5 }).await;
    assert_eq!(stream.incoming.recv().await, None);
    assert!(stream.writer.write(b"x").await.is_err());
}

#[tokio::test]
async fn a_thousand_streams_cost_one_connection_its_limit() {
    let (mut conn, mut client) = pair();
    for i in 0..1000u32 {
        client.open(2 * i + 1, "data", 0).await;
    }
    let (mut replies, mut refused) = (0, 0);
    while replies + refused < 1000 {
        match client.next().await {
            Some(Frame::SynReply { .. }) => replies += 1,
            Some(Frame::RstStream { status: frame::REFUSED_STREAM, .. }) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((replies, refused), (MAX_STREAMS, 1000 - MAX_STREAMS));
    let mut held = 0;
    while conn.streams.try_recv().is_ok() {
        held += 1;
    }
    assert_eq!(held, MAX_STREAMS);
}

#[tokio::test]
async fn a_stream_closed_both_ways_frees_its_slot() {
    let (mut conn, mut client) = pair();
    for i in 0..(2 * MAX_STREAMS as u32) {
        client.open(2 * i + 1, "data", FLAG_FIN).await;
        assert!(matches!(client.next().await, Some(Frame::SynReply { .. })), "stream {i} is answered");
        let stream = conn.streams.recv().await.expect("a stream");
        stream.writer.finish().await;
        assert!(matches!(client.next().await, Some(Frame::Data { flags: FLAG_FIN, .. })));
    }
}

#[tokio::test]
async fn garbage_ends_the_connection_with_a_goaway() {
    let (_conn, mut client) = pair();
    client.io.write_all(&[0x80, 0x07, 0, 1, 0, 0, 0, 0]).await.expect("writes");
    assert_eq!(client.next().await, Some(Frame::GoAway { last_good_stream_id: 0, status: frame::PROTOCOL_ERROR }));
    assert_eq!(client.next().await, None);
}

#[tokio::test]
async fn a_stream_id_that_goes_backwards_is_reset() {
    let (_conn, mut client) = pair();
    client.open(3, "a", 0).await;
    client.next().await;
    client.open(1, "b", 0).await;
    assert_eq!(client.next().await, Some(Frame::RstStream { stream_id: 1, status: frame::PROTOCOL_ERROR }));
}
