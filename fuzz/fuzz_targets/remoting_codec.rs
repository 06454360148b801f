//! The remoting frame codec: `frame_length` on the 4-byte length prefix, then `decode` on the rest,
//! as the client reads a frame off the socket. Whatever decodes must survive `encode` → `decode`
//! unchanged (the codec's own round trip).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rmq_exporter::source::remoting::codec::{decode, frame_length, DEFAULT_MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let Some((prefix, rest)) = data.split_first_chunk::<4>() else {
        let _ = decode(Bytes::copy_from_slice(data));
        return;
    };
    // The production limit, and a small one so that refusals are exercised too.
    for max in [DEFAULT_MAX_FRAME, 64] {
        if let Ok(len) = frame_length(*prefix, max) {
            assert!(
                (4..=max).contains(&len),
                "frame_length {len} outside 4..={max}"
            );
        }
    }
    // A frame as announced when the input holds it all, else whatever is there.
    let frame = match frame_length(*prefix, DEFAULT_MAX_FRAME) {
        Ok(len) if len <= rest.len() => &rest[..len],
        _ => rest,
    };
    let Ok(cmd) = decode(Bytes::copy_from_slice(frame)) else {
        return;
    };
    let _ = cmd.is_response();
    let encoded = cmd.encode();
    let len = frame_length(
        [encoded[0], encoded[1], encoded[2], encoded[3]],
        DEFAULT_MAX_FRAME,
    )
    .expect("an encoded frame has a valid length");
    assert_eq!(len, encoded.len() - 4);
    let back = decode(encoded.slice(4..)).expect("an encoded frame decodes");
    assert_eq!(back, cmd, "encode → decode changed the command");
});
