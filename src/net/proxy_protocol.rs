//! The PROXY protocol header (HAProxy's spec, versions 1 and 2), sans-io: decide whether a
//! connection starts with one, and parse it into the addresses it carries.
//!
//! Version 1 is one text line (`PROXY TCP4 src dst sport dport\r\n`, at most 107 bytes); version 2 a
//! 16-byte binary preamble and an address block whose TLVs are walked and skipped with every length
//! checked. Nothing here trusts the peer: whether it may send a header at all is the caller's call.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version 2 signature (spec §2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest version 1 line, CRLF included (spec §2.1).
pub const V1_MAX: usize = 107;
/// Longest version 2 header ringgate accepts (16-byte preamble + address block with TLVs).
pub const V2_MAX: usize = 16 + 1024;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// 1 or 2.
    pub version: u8,
    /// The client's address, when the header carries one (v1 TCP4/TCP6, v2 PROXY over TCP/UDP
    /// over IPv4/IPv6). None for v1 UNKNOWN, v2 LOCAL and v2 families ringgate does not use:
    /// the connection's own peer address stands.
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
    /// Bytes of the header, to drop from the front of the buffer.
    pub len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The bytes cannot start a PROXY header (with `optional` mode: plain HTTP).
    #[error("no PROXY protocol header")]
    Absent,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("PROXY protocol header too long")]
    TooLong,
}

/// Parse a header at the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    const V1: &[u8] = b"PROXY ";
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() { Ok(None) } else { parse_v2(buf) };
    }
    let n = buf.len().min(V1.len());
    if buf[..n] == V1[..n] {
        return if n < V1.len() { Ok(None) } else { parse_v1(buf) };
    }
    Err(HeaderError::Absent)
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX { Err(HeaderError::TooLong) } else { Ok(None) };
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(HeaderError::Malformed("v1 line does not end with CRLF"));
    }
    let line = std::str::from_utf8(&window[..lf - 1]).map_err(|_| HeaderError::Malformed("v1 line is not ASCII"))?;
    let mut parts = line.split(' ');
    let _proxy = parts.next();
    let proto = parts.next().ok_or(HeaderError::Malformed("v1 without protocol"))?;
    let len = lf + 1;
    if proto == "UNKNOWN" {
        // The rest of the line is to be ignored (spec §2.1).
        return Ok(Some(Header { version: 1, source: None, destination: None, len }));
    }
    let v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(HeaderError::Malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields.as_slice() else {
        return Err(HeaderError::Malformed("v1 needs exactly four address fields"));
    };
    let ip = |s: &str| -> Result<IpAddr, HeaderError> {
        let ip: IpAddr = s.parse().map_err(|_| HeaderError::Malformed("v1 address"))?;
        if ip.is_ipv6() != v6 {
            return Err(HeaderError::Malformed("v1 address family does not match the protocol"));
        }
        Ok(ip)
    };
    let port = |s: &str| -> Result<u16, HeaderError> {
        // Decimal, no sign, no leading zero (spec §2.1).
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
        {
            return Err(HeaderError::Malformed("v1 port"));
        }
        s.parse().map_err(|_| HeaderError::Malformed("v1 port"))
    };
    Ok(Some(Header {
        version: 1,
        source: Some(SocketAddr::new(ip(src)?, port(sport)?)),
        destination: Some(SocketAddr::new(ip(dst)?, port(dport)?)),
        len,
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(HeaderError::Malformed("v2 version is not 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(HeaderError::Malformed("v2 command is neither LOCAL nor PROXY")),
    };
    let fam = buf[13];
    let body = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let len = 16 + body;
    if len > V2_MAX {
        return Err(HeaderError::TooLong);
    }
    if buf.len() < len {
        return Ok(None);
    }
    let block = &buf[16..len];
    if local {
        // LOCAL: the balancer speaking for itself; the address block is to be ignored (§2.2).
        return Ok(Some(Header { version: 2, source: None, destination: None, len }));
    }
    let (addr_len, source, destination) = match fam >> 4 {
        // AF_INET
        1 => {
            let a = block.get(..12).ok_or(HeaderError::Malformed("v2 IPv4 block too short"))?;
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (12, Some(SocketAddr::new(ip(0), port(8))), Some(SocketAddr::new(ip(4), port(10))))
        }
        // AF_INET6
        2 => {
            let a = block.get(..36).ok_or(HeaderError::Malformed("v2 IPv6 block too short"))?;
            let ip = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&a[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (36, Some(SocketAddr::new(ip(0), port(32))), Some(SocketAddr::new(ip(16), port(34))))
        }
        // AF_UNSPEC, AF_UNIX: no address ringgate can use.
        0 => (0, None, None),
        3 => (216.min(block.len()), None, None),
        _ => return Err(HeaderError::Malformed("v2 address family unknown")),
    };
    if !matches!(fam & 0x0f, 0..=2) {
        return Err(HeaderError::Malformed("v2 transport protocol unknown"));
    }
    skip_tlvs(&block[addr_len..])?;
    let (source, destination) = if fam & 0x0f == 0 { (None, None) } else { (source, destination) };
    Ok(Some(Header { version: 2, source, destination, len }))
}

/// Walk the TLVs (type, 16-bit length, value) after the addresses; each must fit exactly.
fn skip_tlvs(mut rest: &[u8]) -> Result<(), HeaderError> {
    while !rest.is_empty() {
        if rest.len() < 3 {
            return Err(HeaderError::Malformed("v2 TLV header truncated"));
        }
        let n = u16::from_be_bytes([rest[1], rest[2]]) as usize;
        rest = rest.get(3 + n..).ok_or(HeaderError::Malformed("v2 TLV longer than the header"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(s: &str) -> Result<Option<Header>, HeaderError> {
        parse(s.as_bytes())
    }

    /// The spec's v1 examples (§2.1).
    #[test]
    fn v1_spec_examples() {
        let h = v1("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\nGET /").expect("ok").expect("complete");
        assert_eq!(h.source, Some("255.255.255.255:65535".parse().expect("addr")));
        assert_eq!(h.len, 56);
        let h = v1("PROXY TCP6 ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n");
        assert_eq!(h, Err(HeaderError::Malformed("v1 address")));
        let line = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        let h = v1(line).expect("ok").expect("complete");
        assert_eq!(h.source.map(|s| s.port()), Some(65535));
        // The spec's worst case is UNKNOWN with IPv6 addresses: 107 bytes.
        let longest = line.replacen("TCP6", "UNKNOWN", 1);
        assert_eq!(longest.len(), V1_MAX);
        assert_eq!(v1(&longest).expect("ok").map(|h| h.len), Some(V1_MAX));
        assert_eq!(v1(&longest.replacen("UNKNOWN", "UNKNOWN ", 1)), Err(HeaderError::TooLong));
        let h = v1("PROXY UNKNOWN\r\n").expect("ok").expect("complete");
        assert_eq!((h.source, h.len), (None, 15));
        let h = v1("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n").expect("ok").expect("complete");
        assert_eq!(h.source, None);
        let h = v1("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n").expect("ok").expect("complete");
        assert_eq!(h.source, Some("192.168.0.1:56324".parse().expect("addr")));
        assert_eq!(h.destination, Some("192.168.0.11:443".parse().expect("addr")));
    }

    #[test]
    fn v1_incomplete_and_bad() {
        assert_eq!(v1("PRO"), Ok(None));
        assert_eq!(v1("PROXY TCP4 1.2.3.4"), Ok(None));
        assert_eq!(v1("GET / HTTP/1.1\r\n"), Err(HeaderError::Absent));
        assert_eq!(v1(&format!("PROXY TCP4 {}", "1".repeat(200))), Err(HeaderError::TooLong));
        assert!(matches!(v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), Err(HeaderError::Malformed(_))), "bare LF");
        assert!(matches!(v1("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), Err(HeaderError::Malformed(_))), "family");
        assert!(matches!(v1("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), Err(HeaderError::Malformed(_))), "leading 0");
        assert!(matches!(v1("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), Err(HeaderError::Malformed(_))), "port");
        assert!(matches!(v1("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), Err(HeaderError::Malformed(_))), "two spaces");
        assert!(matches!(v1("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), Err(HeaderError::Malformed(_))));
        assert!(matches!(v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), Err(HeaderError::Malformed(_))));
    }

    fn v2(cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(0x20 | cmd);
        b.push(fam);
        b.extend_from_slice(&(block.len() as u16).to_be_bytes());
        b.extend_from_slice(block);
        b
    }

    /// §2.2: PROXY over TCP/IPv4 and IPv6, LOCAL, UNSPEC, TLVs.
    #[test]
    fn v2_spec_cases() {
        let mut block = vec![10, 0, 0, 1, 10, 0, 0, 2];
        block.extend_from_slice(&1234u16.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        let mut with_tlv = block.clone();
        with_tlv.extend_from_slice(&[0x04, 0, 3, b'a', b'b', b'c']); // PP2_TYPE_NOOP
        for b in [&block, &with_tlv] {
            let buf = v2(1, 0x11, b);
            let h = parse(&buf).expect("ok").expect("complete");
            assert_eq!(h.source, Some("10.0.0.1:1234".parse().expect("addr")));
            assert_eq!(h.destination, Some("10.0.0.2:443".parse().expect("addr")));
            assert_eq!(h.len, buf.len());
            for cut in 0..buf.len() {
                assert_eq!(parse(&buf[..cut]), Ok(None), "prefix of {cut} bytes");
            }
        }
        let mut b6 = [0u8; 36];
        b6[15] = 1; // ::1
        b6[31] = 2;
        b6[32..34].copy_from_slice(&80u16.to_be_bytes());
        let h = parse(&v2(1, 0x21, &b6)).expect("ok").expect("complete");
        assert_eq!(h.source, Some("[::1]:80".parse().expect("addr")));
        let h = parse(&v2(0, 0x11, &block)).expect("ok").expect("complete");
        assert_eq!(h.source, None, "LOCAL keeps the real peer");
        let h = parse(&v2(1, 0x00, &[])).expect("ok").expect("complete");
        assert_eq!(h.source, None, "UNSPEC");
    }

    #[test]
    fn v2_bad() {
        let block = [0u8; 12];
        let mut buf = v2(1, 0x11, &block);
        buf[12] = 0x11;
        assert!(matches!(parse(&buf), Err(HeaderError::Malformed(_))), "version 1 in a v2 header");
        let mut buf = v2(1, 0x11, &block);
        buf[12] = 0x2f;
        assert!(matches!(parse(&buf), Err(HeaderError::Malformed(_))), "command");
        assert!(matches!(parse(&v2(1, 0x11, &[0; 8])), Err(HeaderError::Malformed(_))), "short IPv4 block");
        assert!(matches!(parse(&v2(1, 0x41, &block)), Err(HeaderError::Malformed(_))), "family");
        let mut tlv = block.to_vec();
        tlv.extend_from_slice(&[0x01, 0, 9, 1]);
        assert!(matches!(parse(&v2(1, 0x11, &tlv)), Err(HeaderError::Malformed(_))), "TLV overruns");
        let mut tlv = block.to_vec();
        tlv.extend_from_slice(&[0x01, 0]);
        assert!(matches!(parse(&v2(1, 0x11, &tlv)), Err(HeaderError::Malformed(_))), "TLV truncated");
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&big), Err(HeaderError::TooLong));
    }

    /// Any input: no panic, and a complete header never claims more bytes than it was given.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds: [&[u8]; 3] = [&V2_SIGNATURE, b"PROXY TCP4 ", b"PROXY TCP6 "];
        for i in 0..200_000 {
            let mut buf = seeds[i % 3].to_vec();
            let n = (next() % 64) as usize;
            buf.extend((0..n).map(|_| {
                let r = next() as u8;
                if i % 2 == 0 {
                    r
                } else {
                    b"0123456789.: \r\n"[r as usize % 15]
                }
            }));
            if let Ok(Some(h)) = parse(&buf) {
                assert!(h.len <= buf.len());
            }
        }
    }
}
