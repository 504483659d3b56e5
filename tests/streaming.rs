//! Large bodies stream through the gateway in both directions with bounded memory: 100 MiB uploads
//! (Content-Length and chunked) and downloads (Content-Length and chunked), checked byte for byte
//! by checksum, with the gateway's peak RSS (VmHWM) bounded. Each transfer includes a deliberate
//! 1 s stall on the receiving side, so a gateway that buffers instead of applying backpressure
//! would balloon while the sender keeps pushing.

#[macro_use]
mod support;

use std::io::Write;
use std::thread;
use std::time::Duration;
use support::*;

const MIB: u64 = 1 << 20;
/// Peak RSS allowed for the gateway process after a 100 MiB transfer.
const MAX_HWM_KIB: u64 = 64 * 1024;
/// Receiver stall used to provoke buffering.
const STALL: Duration = Duration::from_secs(1);

fn streaming_config(up: &TestUpstream) -> ConfigBuilder {
    ConfigBuilder::new().limit("max_body_bytes = 0").upstream("test", &[up.addr()], "").route(
        "/",
        "test",
        "response_timeout = \"60s\"\nidle_timeout = \"60s\"",
    )
}

/// Uploads `len` pattern bytes (Content-Length or chunked with uneven chunk sizes) from a writer
/// thread and returns the response.
fn upload(gw: &Gateway, len: u64, chunked: bool) -> Response {
    let mut c = gw.client();
    c.set_read_timeout(Duration::from_secs(120));
    let framing = if chunked { "Transfer-Encoding: chunked".to_string() } else { format!("Content-Length: {len}") };
    let head = format!("POST /upload HTTP/1.1\r\nHost: test.local\r\n{framing}\r\n\r\n");
    let mut w = c.stream().try_clone().expect("clone client socket");
    let writer = thread::spawn(move || -> std::io::Result<()> {
        w.write_all(head.as_bytes())?;
        let sizes = [256 * 1024, 1, 65_521, 3, 128 * 1024, 4096];
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0u64;
        let mut i = 0;
        while off < len {
            let n = (sizes[i % sizes.len()] as u64).min(len - off) as usize;
            i += 1;
            fill_pattern(off, &mut buf[..n]);
            if chunked {
                w.write_all(format!("{n:x}\r\n").as_bytes())?;
                w.write_all(&buf[..n])?;
                w.write_all(b"\r\n")?;
            } else {
                w.write_all(&buf[..n])?;
            }
            off += n as u64;
        }
        if chunked {
            w.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    });
    let resp = c.read_response();
    let written = writer.join().expect("upload writer thread panicked");
    assert!(written.is_ok(), "upload write failed: {written:?} (response: {})", resp.head_str());
    resp
}

/// Downloads from the gateway, comparing every byte with the pattern and checksumming it; stalls
/// once after the first MiB.
fn download(gw: &Gateway, len: u64, want_chunked: bool) {
    let mut c = gw.client();
    c.set_read_timeout(Duration::from_secs(120));
    c.send(&get("/download"));
    let mut fnv = Fnv64::default();
    let mut offset = 0u64;
    let mut expected = vec![0u8; 256 * 1024];
    let mut first_mismatch: Option<u64> = None;
    let mut stalled = false;
    let mut sink = |data: &[u8]| {
        for piece in data.chunks(expected.len()) {
            fill_pattern(offset, &mut expected[..piece.len()]);
            if first_mismatch.is_none() && piece != &expected[..piece.len()] {
                let at = piece.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(0);
                first_mismatch = Some(offset + at as u64);
            }
            offset += piece.len() as u64;
        }
        fnv.update(data);
        if !stalled && offset >= MIB {
            stalled = true;
            thread::sleep(STALL);
        }
    };
    let resp = c
        .try_read_response_to("GET", Some(&mut sink))
        .unwrap_or_else(|e| panic!("download after {offset} bytes: {e}"))
        .expect("a response before close");
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    if want_chunked {
        assert_eq!(resp.framing, Framing::Chunked, "{}", resp.head_str());
    } else {
        assert_eq!(resp.framing, Framing::Length(len), "{}", resp.head_str());
    }
    assert_eq!(resp.body_len, len, "downloaded length");
    assert_eq!(first_mismatch, None, "first corrupted byte offset");
    assert_eq!(fnv.finish(), pattern_fnv(len), "download checksum");
}

fn assert_low_peak_rss(gw: &Gateway, what: &str) {
    let hwm = gw.vm_hwm_kib();
    eprintln!("gateway VmHWM after {what}: {hwm} KiB");
    assert!(
        hwm < MAX_HWM_KIB,
        "gateway peak RSS {hwm} KiB after {what} exceeds {MAX_HWM_KIB} KiB: is the body buffered?"
    );
}

fn checksum_reply(len: u64) -> String {
    format!("len={len} fnv={:016x}", pattern_fnv(len))
}

/// 100 MiB upload with Content-Length, checksummed at the upstream; bounded gateway memory.
fn upload_100mib_content_length(driver: Driver) {
    let up = TestUpstream::checksum_with_pause(MIB, STALL);
    let gw = streaming_config(&up).start(driver);
    let len = 100 * MIB;
    let resp = upload(&gw, len, false);
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body_str(), checksum_reply(len));
    let r = &up.wait_requests(1, PROMPT)[0];
    assert!(!r.chunked);
    assert_low_peak_rss(&gw, "a 100 MiB Content-Length upload");
}

/// 100 MiB chunked upload with uneven chunk sizes, forwarded chunked, checksummed.
fn upload_100mib_chunked(driver: Driver) {
    let up = TestUpstream::checksum_with_pause(MIB, STALL);
    let gw = streaming_config(&up).start(driver);
    let len = 100 * MIB;
    let resp = upload(&gw, len, true);
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body_str(), checksum_reply(len));
    let r = &up.wait_requests(1, PROMPT)[0];
    assert!(r.chunked, "a chunked upload is forwarded chunked: {}", r.head_str());
    assert_low_peak_rss(&gw, "a 100 MiB chunked upload");
}

/// 100 MiB download with Content-Length, verified byte for byte and by checksum.
fn download_100mib_content_length(driver: Driver) {
    let up = TestUpstream::download(100 * MIB, false);
    let gw = streaming_config(&up).start(driver);
    download(&gw, 100 * MIB, false);
    assert_low_peak_rss(&gw, "a 100 MiB Content-Length download");
}

/// 100 MiB chunked download, relayed chunked.
fn download_100mib_chunked(driver: Driver) {
    let up = TestUpstream::download(100 * MIB, true);
    let gw = streaming_config(&up).start(driver);
    download(&gw, 100 * MIB, true);
    assert_low_peak_rss(&gw, "a 100 MiB chunked download");
}

/// 1 GiB each way (slow; run with `cargo test -- --ignored`).
fn transfer_1gib_each_way(driver: Driver) {
    let len = 1024 * MIB;
    let up = TestUpstream::with_handler(move |r| {
        if r.method == "POST" {
            Action::Checksum
        } else {
            Action::Download { len, chunked: false }
        }
    });
    let gw = streaming_config(&up).start(driver);
    let resp = upload(&gw, len, false);
    assert_eq!(resp.body_str(), checksum_reply(len));
    download(&gw, len, false);
    assert_low_peak_rss(&gw, "1 GiB each way");
}

both_drivers!(
    upload_100mib_content_length,
    upload_100mib_chunked,
    download_100mib_content_length,
    download_100mib_chunked,
    #[ignore = "1 GiB transfers take long in debug builds"]
    transfer_1gib_each_way,
);
