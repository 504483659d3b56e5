//! Request framing and smuggling defences (RFC 9112 §2.2, §3, §5, §6, §7; RFC 9110 §5, §8.6).
//!
//! Every rejection test checks four things: the response is a 400 (505 for an unsupported
//! version, 501 for an unimplemented transfer coding), it carries `Connection: close`, the
//! gateway then closes the connection, and the upstream received exactly the complete requests it
//! should have (none, or the valid ones sent before the bad one) plus a sentinel request sent
//! afterwards on a fresh connection. Smuggled requests hidden in bodies (`/smuggled`) must never
//! reach the upstream.
//!
//! ringgate's policy where the RFCs leave a choice: any Content-Length that is not plain digits is
//! rejected (even `1,1`, which RFC 9110 §8.6 would allow); CL together with TE is rejected (RFC 9112
//! §6.1 allows rejecting); bare LF is not accepted as a line terminator (RFC 9112 §2.2 allows
//! rejecting); obs-fold is rejected (RFC 9112 §5.2); an absolute-form authority that differs from
//! Host is rejected.

#[macro_use]
mod support;

use support::*;

/// A request hidden in a body by the smuggling payloads.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: test.local\r\n\r\n";

/// Sends `raw` on one connection and checks the rejection (see the module doc). `ok_before` holds
/// the paths of the valid GETs at the start of `raw`, which must be answered (200) and forwarded
/// before the rejection. `statuses` lists the acceptable rejection codes (usually just 400).
fn check_rejected(driver: Driver, raw: &[u8], ok_before: &[&str], statuses: &[u16]) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    // The gateway may reject and close before reading everything we send.
    let _ = c.try_send(raw);
    for path in ok_before {
        let resp = c.read_response();
        assert_eq!(resp.status, 200, "valid request {path} before the bad one: {}", resp.head_str());
        assert_eq!(resp.body, echo_body("GET", path, b""));
    }
    let resp = c.read_response();
    assert!(
        statuses.contains(&resp.status),
        "expected {statuses:?} for {:?}, got {}",
        String::from_utf8_lossy(raw),
        resp.head_str()
    );
    assert!(resp.is_close(), "rejection without Connection: close: {}", resp.head_str());
    c.assert_closed(PROMPT);

    let sentinel = Client::connect(gw.addr).request(&get("/sentinel"));
    assert_eq!(sentinel.status, 200, "the gateway must keep serving other connections");
    let mut want: Vec<String> = ok_before.iter().map(|p| p.to_string()).collect();
    want.push("/sentinel".into());
    up.wait_requests(want.len(), PROMPT);
    std::thread::sleep(SETTLE);
    let got: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(got, want, "requests that reached the upstream");
    assert!(up.errors().is_empty(), "upstream saw protocol errors: {:?}", up.errors());
}

fn rejected(driver: Driver, raw: &[u8]) {
    check_rejected(driver, raw, &[], &[400]);
}

/// `POST /` with the given extra field lines (each ending in CRLF) and body.
fn post(fields: &str, body: &str) -> Vec<u8> {
    format!("POST / HTTP/1.1\r\nHost: test.local\r\n{fields}\r\n{body}").into_bytes()
}

/// Sends `raw` and expects it to be accepted and forwarded with `body`.
fn accepted(driver: Driver, raw: &[u8], body: &[u8]) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    c.send(raw);
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "valid request rejected: {:?} -> {}", String::from_utf8_lossy(raw), resp.head_str());
    let r = &up.wait_requests(1, PROMPT)[0];
    assert_eq!(r.body, body, "body as forwarded");
    // The connection is still in sync: a second request works.
    let again = c.request(&get("/again"));
    assert_eq!(again.status, 200, "{}", again.head_str());
    assert_eq!(again.body, echo_body("GET", "/again", b""));
}

// ---- Content-Length and Transfer-Encoding together (RFC 9112 §6.1, §6.3 rule 3) ----

/// Classic CL.TE: a CL-framed reader would see one request, a TE-framed one two.
fn cl_te_smuggling_rejected_rfc9112_6_1(driver: Driver) {
    let body = format!("0\r\n\r\n{SMUGGLED}");
    rejected(driver, &post(&format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", body.len()), &body));
}

/// Classic TE.CL: the chunk hides a request from a CL-framed reader.
fn te_cl_smuggling_rejected_rfc9112_6_1(driver: Driver) {
    let body = format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len());
    rejected(driver, &post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", &body));
}

/// A smuggling request after a valid one on the same connection: the valid one is served, the
/// bad one rejected, nothing hidden gets through.
fn smuggling_after_valid_request_rfc9112_6_1(driver: Driver) {
    let body = format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len());
    let mut raw = get("/first");
    raw.extend(post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", &body));
    check_rejected(driver, &raw, &["/first"], &[400]);
}

// ---- Transfer-Encoding whose final coding is not chunked (RFC 9112 §6.3 rule 4) ----

fn te_gzip_only_rfc9112_6_3(driver: Driver) {
    rejected(driver, &post("Transfer-Encoding: gzip\r\n", SMUGGLED));
}

fn te_chunked_then_identity_rfc9112_6_3(driver: Driver) {
    rejected(driver, &post("Transfer-Encoding: chunked, identity\r\n", &format!("0\r\n\r\n{SMUGGLED}")));
}

/// Obfuscated coding name: not "chunked", so not understood.
fn te_xchunked_rfc9112_6_3(driver: Driver) {
    rejected(driver, &post("Transfer-Encoding: xchunked\r\n", &format!("0\r\n\r\n{SMUGGLED}")));
}

fn te_quoted_chunked_rfc9112_6_3(driver: Driver) {
    rejected(driver, &post("Transfer-Encoding: \"chunked\"\r\n", &format!("0\r\n\r\n{SMUGGLED}")));
}

fn te_empty_value_rfc9112_6_3(driver: Driver) {
    rejected(driver, &post("Transfer-Encoding: \r\n", &format!("0\r\n\r\n{SMUGGLED}")));
}

/// chunked applied twice (two field lines) is forbidden (RFC 9112 §6.1).
fn te_chunked_twice_rfc9112_6_1(driver: Driver) {
    rejected(driver, &post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"));
}

/// Transfer-Encoding in an HTTP/1.0 request means faulty framing (RFC 9112 §6.1).
fn te_in_http10_request_rfc9112_6_1(driver: Driver) {
    rejected(
        driver,
        format!("POST / HTTP/1.0\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}")
            .as_bytes(),
    );
}

// ---- Content-Length (RFC 9110 §8.6, RFC 9112 §6.3 rule 5) ----

fn cl_duplicate_differing_rfc9112_6_3(driver: Driver) {
    rejected(driver, &post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"));
}

/// A list of identical values: RFC 9110 §8.6 would allow it; ringgate rejects non-digit CL.
fn cl_list_of_identical_values_rfc9110_8_6(driver: Driver) {
    rejected(driver, &post("Content-Length: 5, 5\r\n", "hello"));
}

fn cl_list_without_space_rfc9110_8_6(driver: Driver) {
    rejected(driver, &post("Content-Length: 1,1\r\n", "h"));
}

fn cl_plus_sign_rfc9110_8_6(driver: Driver) {
    rejected(driver, &post("Content-Length: +5\r\n", "hello"));
}

fn cl_negative_rfc9110_8_6(driver: Driver) {
    rejected(driver, &post("Content-Length: -1\r\n", "hello"));
}

fn cl_hex_rfc9110_8_6(driver: Driver) {
    rejected(driver, &post("Content-Length: 0x10\r\n", "0123456789abcdef"));
}

fn cl_empty_rfc9110_8_6(driver: Driver) {
    rejected(driver, &post("Content-Length: \r\n", "hello"));
}

fn cl_inner_space_rfc9110_8_6(driver: Driver) {
    rejected(driver, &post("Content-Length: 1 2\r\n", "hello world!"));
}

/// A value that overflows 64 bits must not wrap (RFC 9110 §8.6): 400, or 413 as too large.
fn cl_overflow_rfc9110_8_6(driver: Driver) {
    check_rejected(driver, &post("Content-Length: 18446744073709551621\r\n", "hello"), &[], &[400, 413]);
}

// ---- chunked coding (RFC 9112 §7.1) ----

fn chunk_size_not_hex_rfc9112_7_1(driver: Driver) {
    rejected(driver, &post("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"));
}

/// 18 hex digits do not fit in 64 bits: must be rejected, not wrapped.
fn chunk_size_overflow_rfc9112_7_1(driver: Driver) {
    rejected(
        driver,
        &post("Transfer-Encoding: chunked\r\n", &format!("ffffffffffffffffff\r\nhello\r\n0\r\n\r\n{SMUGGLED}")),
    );
}

fn chunk_size_negative_rfc9112_7_1(driver: Driver) {
    rejected(driver, &post("Transfer-Encoding: chunked\r\n", "-5\r\nhello\r\n0\r\n\r\n"));
}

fn chunk_size_0x_prefix_rfc9112_7_1(driver: Driver) {
    rejected(driver, &post("Transfer-Encoding: chunked\r\n", "0x5\r\nhello\r\n0\r\n\r\n"));
}

/// Chunk data longer than its size: the CRLF after the data is missing.
fn chunk_data_longer_than_size_rfc9112_7_1(driver: Driver) {
    rejected(driver, &post("Transfer-Encoding: chunked\r\n", &format!("5\r\nhelloXX\r\n0\r\n\r\n{SMUGGLED}")));
}

/// A chunk-size line ended by a bare LF (the "chunked LF" desync class).
fn chunk_size_bare_lf_rfc9112_7_1(driver: Driver) {
    rejected(driver, &post("Transfer-Encoding: chunked\r\n", &format!("5\nhello\r\n0\r\n\r\n{SMUGGLED}")));
}

// ---- line endings and field syntax (RFC 9112 §2.2, §5; RFC 9110 §5.5) ----

fn bare_lf_line_endings_rfc9112_2_2(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\nHost: test.local\n\n");
}

fn bare_lf_in_one_field_line_rfc9112_2_2(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\nHost: test.local\nX-A: 1\r\n\r\n");
}

fn bare_cr_in_field_rfc9112_2_2(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\nHost: test.local\r\nX-A: 1\rX-B: 2\r\n\r\n");
}

fn obs_fold_rfc9112_5_2(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\nHost: test.local\r\nX-Folded: a\r\n b\r\n\r\n");
}

/// Whitespace before the first field line: ringgate rejects it like obs-fold (RFC 9112 §2.2
/// allows rejecting or ignoring that line).
fn whitespace_before_first_field_rfc9112_2_2(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\n X-Hidden: 1\r\nHost: test.local\r\n\r\n");
}

fn space_before_colon_rfc9112_5_1(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\nHost: test.local\r\nX-Space : v\r\n\r\n");
}

/// The smuggling form of the above: `Transfer-Encoding :` must not be half-understood.
fn space_before_colon_in_te_rfc9112_5_1(driver: Driver) {
    rejected(driver, &post("Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"));
}

fn tab_before_colon_rfc9112_5_1(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\nHost: test.local\r\nX-Tab\t: v\r\n\r\n");
}

fn control_char_in_value_rfc9110_5_5(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\nHost: test.local\r\nX-Ctl: a\x01b\r\n\r\n");
}

fn nul_in_value_rfc9110_5_5(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\nHost: test.local\r\nX-Nul: a\x00b\r\n\r\n");
}

fn del_in_value_rfc9110_5_5(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\nHost: test.local\r\nX-Del: a\x7fb\r\n\r\n");
}

fn bad_char_in_field_name_rfc9110_5_1(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\nHost: test.local\r\nX(Bad): y\r\n\r\n");
}

fn empty_field_name_rfc9110_5_1(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\nHost: test.local\r\n: nameless\r\n\r\n");
}

// ---- request line and Host (RFC 9112 §3, §3.2) ----

fn missing_host_in_http11_rfc9112_3_2(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n");
}

fn two_host_fields_rfc9112_3_2(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n");
}

fn host_with_list_value_rfc9112_3_2(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n");
}

/// ringgate policy: an absolute-form authority must agree with Host.
fn absolute_form_authority_differs_from_host_rfc9112_3_2_2(driver: Driver) {
    rejected(driver, b"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n");
}

fn request_line_double_space_rfc9112_3(driver: Driver) {
    rejected(driver, b"GET  / HTTP/1.1\r\nHost: test.local\r\n\r\n");
}

fn space_in_request_target_rfc9112_3_2(driver: Driver) {
    rejected(driver, b"GET /a b HTTP/1.1\r\nHost: test.local\r\n\r\n");
}

fn bad_http_version_rfc9112_2_3(driver: Driver) {
    rejected(driver, b"GET / HTTP/1.x\r\nHost: test.local\r\n\r\n");
}

/// A well-formed version ringgate does not speak is a 505, not a 400 (RFC 9110 §15.6.6), and
/// is closed like any other rejection; `HTTP/1.x` above stays a 400 (malformed, not unsupported).
fn unsupported_http_version_505_rfc9110_15_6_6(driver: Driver) {
    check_rejected(driver, b"GET / HTTP/2.0\r\nHost: test.local\r\n\r\n", &[], &[505]);
}

/// A transfer coding ringgate does not implement before the final chunked is a 501 (RFC 9112
/// §6.1), not a 400, and the body (which would need decoding) is never forwarded.
fn te_gzip_then_chunked_501_rfc9112_6_1(driver: Driver) {
    let body = format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len());
    check_rejected(driver, &post("Transfer-Encoding: gzip, chunked\r\n", &body), &[], &[501]);
}

/// `Connection: x-a0, x-a1, …` with `n` distinct option names, and a field for each.
fn connection_options(n: usize) -> Vec<u8> {
    let names: Vec<String> = (0..n).map(|i| format!("x-a{i}")).collect();
    let mut raw = format!("GET /opts HTTP/1.1\r\nHost: test.local\r\nConnection: {}\r\n", names.join(", "));
    for name in &names {
        raw.push_str(&format!("{name}: v\r\n"));
    }
    raw.push_str("X-End-To-End: kept\r\n\r\n");
    raw.into_bytes()
}

/// ringgate policy: more than 32 Connection options is a 400 (each one is compared with every
/// field line when forwarding); a handful is fine and the fields they name are dropped as
/// hop-by-hop (RFC 9110 §7.6.1).
fn too_many_connection_options_rfc9110_7_6_1(driver: Driver) {
    rejected(driver, &connection_options(33));

    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let resp = c.request(&connection_options(5));
    assert_eq!(resp.status, 200, "5 Connection options: {}", resp.head_str());
    let r = &up.wait_requests(1, PROMPT)[0];
    for i in 0..5 {
        let name = format!("x-a{i}");
        assert!(!r.has_header(&name), "field {name} named by Connection was forwarded: {}", r.head_str());
        assert!(!r.has_token("connection", &name), "Connection still names {name}: {}", r.head_str());
    }
    assert_eq!(r.header("x-end-to-end"), Some("kept"), "{}", r.head_str());
    let again = c.request(&get("/again"));
    assert_eq!(again.status, 200, "{}", again.head_str());
}

// ---- positive controls: valid framing the gateway must accept ----

/// Chunk extensions and leading zeros in chunk sizes are valid (RFC 9112 §7.1, §7.1.1).
fn chunk_extensions_and_leading_zeros_accepted_rfc9112_7_1_1(driver: Driver) {
    accepted(driver, &post("Transfer-Encoding: chunked\r\n", "0005;name=value;flag\r\nhello\r\n000\r\n\r\n"), b"hello");
}

/// Transfer coding names are case-insensitive (RFC 9112 §7).
fn transfer_coding_name_case_insensitive_rfc9112_7(driver: Driver) {
    accepted(driver, &post("Transfer-Encoding: Chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), b"hello");
}

/// Optional whitespace around a field value is not part of it (RFC 9112 §5.1).
fn content_length_with_ows_accepted_rfc9112_5_1(driver: Driver) {
    accepted(driver, &post("Content-Length: \t 5 \t\r\n", "hello"), b"hello");
}

/// An empty chunked body.
fn empty_chunked_body_accepted_rfc9112_7_1(driver: Driver) {
    accepted(driver, &post("Transfer-Encoding: chunked\r\n", "0\r\n\r\n"), b"");
}

/// An empty line before the request line SHOULD be ignored (RFC 9112 §2.2).
fn leading_empty_line_ignored_rfc9112_2_2(driver: Driver) {
    let mut raw = b"\r\n".to_vec();
    raw.extend(post("Content-Length: 5\r\n", "hello"));
    accepted(driver, &raw, b"hello");
}

both_drivers!(
    cl_te_smuggling_rejected_rfc9112_6_1,
    te_cl_smuggling_rejected_rfc9112_6_1,
    smuggling_after_valid_request_rfc9112_6_1,
    te_gzip_only_rfc9112_6_3,
    te_chunked_then_identity_rfc9112_6_3,
    te_xchunked_rfc9112_6_3,
    te_quoted_chunked_rfc9112_6_3,
    te_empty_value_rfc9112_6_3,
    te_chunked_twice_rfc9112_6_1,
    te_in_http10_request_rfc9112_6_1,
    cl_duplicate_differing_rfc9112_6_3,
    cl_list_of_identical_values_rfc9110_8_6,
    cl_list_without_space_rfc9110_8_6,
    cl_plus_sign_rfc9110_8_6,
    cl_negative_rfc9110_8_6,
    cl_hex_rfc9110_8_6,
    cl_empty_rfc9110_8_6,
    cl_inner_space_rfc9110_8_6,
    cl_overflow_rfc9110_8_6,
    chunk_size_not_hex_rfc9112_7_1,
    chunk_size_overflow_rfc9112_7_1,
    chunk_size_negative_rfc9112_7_1,
    chunk_size_0x_prefix_rfc9112_7_1,
    chunk_data_longer_than_size_rfc9112_7_1,
    chunk_size_bare_lf_rfc9112_7_1,
    bare_lf_line_endings_rfc9112_2_2,
    bare_lf_in_one_field_line_rfc9112_2_2,
    bare_cr_in_field_rfc9112_2_2,
    obs_fold_rfc9112_5_2,
    whitespace_before_first_field_rfc9112_2_2,
    space_before_colon_rfc9112_5_1,
    space_before_colon_in_te_rfc9112_5_1,
    tab_before_colon_rfc9112_5_1,
    control_char_in_value_rfc9110_5_5,
    nul_in_value_rfc9110_5_5,
    del_in_value_rfc9110_5_5,
    bad_char_in_field_name_rfc9110_5_1,
    empty_field_name_rfc9110_5_1,
    missing_host_in_http11_rfc9112_3_2,
    two_host_fields_rfc9112_3_2,
    host_with_list_value_rfc9112_3_2,
    absolute_form_authority_differs_from_host_rfc9112_3_2_2,
    request_line_double_space_rfc9112_3,
    space_in_request_target_rfc9112_3_2,
    bad_http_version_rfc9112_2_3,
    unsupported_http_version_505_rfc9110_15_6_6,
    te_gzip_then_chunked_501_rfc9112_6_1,
    too_many_connection_options_rfc9110_7_6_1,
    chunk_extensions_and_leading_zeros_accepted_rfc9112_7_1_1,
    transfer_coding_name_case_insensitive_rfc9112_7,
    content_length_with_ows_accepted_rfc9112_5_1,
    empty_chunked_body_accepted_rfc9112_7_1,
    leading_empty_line_ignored_rfc9112_2_2,
);
