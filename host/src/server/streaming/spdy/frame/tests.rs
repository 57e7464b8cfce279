use super::*;

fn hex(s: &str) -> BytesMut {
    let bytes: Vec<u8> = (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect();
    BytesMut::from(&bytes[..])
}

fn decode_all(codec: &mut Codec, mut buf: BytesMut) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(f) = codec.decode_frame(&mut buf).expect("decodes") {
        frames.push(f);
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    frames
}

/// Frames written by spdystream's framer (the Go implementation every API server and
/// kubectl use), one connection's worth: the header blocks share one zlib context.
const GO_FRAMES: &[&str] = &[
    "80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff",
    "80030001010000290000000300000000000002651c0c29b6e292947c7019cd5ea19b5b9a5392092e48199200000000ffff",
    "800300020000000e000000016260606000000000ffff",
    "000000030100000568656c6c6f",
    "800300060000000400000007",
    "80030007000000080000000300000000",
    "80030003000000080000000500000003",
    "800300090000000800000003000003e8",
    "800300040000000c000000010000000700008000",
];

#[test]
fn the_dictionary_is_the_drafts() {
    let d = dictionary();
    assert_eq!(d.len(), 1423);
    // The Adler-32 every SPDY/3 header stream names in its zlib header (DICTID).
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in d {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    assert_eq!((b << 16) | a, 0xe3c6_a7c2);
}

#[test]
fn frames_from_spdystream_decode() {
    let mut codec = Codec::default();
    let frames = decode_all(&mut codec, hex(&GO_FRAMES.concat()));
    let syn = |stream_id, flags, headers: &[(&str, &str)]| Frame::SynStream {
        stream_id,
        associated_to: 0,
        priority: 0,
        flags,
        headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
    };
    assert_eq!(frames[0], syn(1, 0, &[("streamtype", "error")]));
    let Frame::SynStream { headers, flags: FLAG_FIN, stream_id: 3, .. } = &frames[1] else { panic!("{:?}", frames[1]) };
    assert_eq!(header(headers, "streamtype"), Some("stdout"));
    assert_eq!(headers.iter().find(|(n, _)| n == "x-multi").map(|(_, v)| v.as_str()), Some("a\0b"));
    assert_eq!(frames[2], Frame::SynReply { stream_id: 1, flags: 0, headers: vec![] });
    assert_eq!(frames[3], Frame::Data { stream_id: 3, flags: FLAG_FIN, data: Bytes::from_static(b"hello") });
    assert_eq!(frames[4], Frame::Ping { id: 7 });
    assert_eq!(frames[5], Frame::GoAway { last_good_stream_id: 3, status: 0 });
    assert_eq!(frames[6], Frame::RstStream { stream_id: 5, status: REFUSED_STREAM });
    assert_eq!(frames[7], Frame::WindowUpdate { stream_id: 3, delta: 1000 });
    assert_eq!(frames[8], Frame::Settings { entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, 32768)] });
}

#[test]
fn a_frame_split_anywhere_waits_for_the_rest() {
    let whole = hex(&GO_FRAMES.concat());
    for cut in 1..whole.len() {
        let mut codec = Codec::default();
        let mut buf = BytesMut::from(&whole[..cut]);
        let mut frames = Vec::new();
        while let Some(f) = codec.decode_frame(&mut buf).expect("decodes") {
            frames.push(f);
        }
        buf.extend_from_slice(&whole[cut..]);
        frames.extend(decode_all(&mut codec, buf));
        assert_eq!(frames.len(), GO_FRAMES.len(), "cut at {cut}");
    }
}

#[test]
fn what_we_write_spdystream_would_read_back() {
    // Our own writer against our reader, with the shared contexts of one connection each
    // way; byte-exact against spdystream for the frames without header blocks.
    let (mut writer, mut reader) = (Codec::default(), Codec::default());
    let frames = vec![
        Frame::SynReply { stream_id: 1, flags: 0, headers: vec![] },
        Frame::SynStream { stream_id: 2, associated_to: 0, priority: 0, flags: 0, headers: vec![("streamtype".into(), "data".into())] },
        Frame::Headers { stream_id: 2, flags: FLAG_FIN, headers: vec![("port".into(), "8080".into())] },
        Frame::Data { stream_id: 3, flags: FLAG_FIN, data: Bytes::from_static(b"hello") },
        Frame::Ping { id: 7 },
        Frame::GoAway { last_good_stream_id: 3, status: 0 },
        Frame::RstStream { stream_id: 5, status: REFUSED_STREAM },
        Frame::WindowUpdate { stream_id: 3, delta: 1000 },
        Frame::Settings { entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, 32768)] },
    ];
    let mut buf = BytesMut::new();
    for f in &frames {
        writer.encode_frame(f, &mut buf);
    }
    // The zlib header names the dictionary by its Adler-32.
    assert_eq!(buf[12..18], [0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2]);
    let mut no_headers = BytesMut::new();
    for f in &frames[3..] {
        writer.encode_frame(f, &mut no_headers);
    }
    assert_eq!(no_headers, hex(&GO_FRAMES[3..].concat()));
    assert_eq!(decode_all(&mut reader, buf), frames);
}

#[test]
fn garbage_is_an_error_or_a_wait_never_a_panic() {
    use rand::{Rng, SeedableRng};
    let valid = hex(&GO_FRAMES.concat());
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5bd1);
    for round in 0..20_000 {
        let mut bytes = if round % 2 == 0 { valid.to_vec() } else { (0..rng.random_range(0..200)).map(|_| rng.random()).collect() };
        for _ in 0..rng.random_range(1..8) {
            if !bytes.is_empty() {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
        }
        let mut codec = Codec::default();
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = codec.decode_frame(&mut buf) {}
    }
}

#[test]
fn limits_hold() {
    let mut codec = Codec::default();
    let mut huge = BytesMut::from(&[0x80, 0x03, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff][..]);
    assert_eq!(codec.decode_frame(&mut huge), Err(FrameError::TooLarge(0xff_ffff)));
    let mut v2 = BytesMut::from(&[0x80, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00][..]);
    assert_eq!(codec.decode_frame(&mut v2), Err(FrameError::Version(2)));
    // A header block that inflates past the limit (a zlib bomb) is refused.
    let mut bomb_writer = Codec::default();
    let big = vec![("x".to_string(), "a".repeat(MAX_HEADER_BYTES))];
    let mut buf = BytesMut::new();
    bomb_writer.encode_frame(&Frame::SynReply { stream_id: 1, flags: 0, headers: big }, &mut buf);
    assert!(buf.len() < 2048, "compresses well: {}", buf.len());
    assert!(matches!(codec.decode_frame(&mut buf), Err(FrameError::Headers(_))));
}
