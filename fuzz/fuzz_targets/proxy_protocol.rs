//! PROXY protocol header parser: no panic on any input; a complete header never claims more bytes
//! than it was given; and feeding the same bytes in two pieces decides the same way as at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringgate::net::proxy_protocol::parse;

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    if let Ok(Some(h)) = &whole {
        assert!(h.len <= data.len());
        // Any prefix shorter than the header is incomplete, never an error or another header.
        for cut in 0..h.len {
            assert_eq!(parse(&data[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }
});
