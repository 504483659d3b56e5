//! A panic inside one connection task (test hook `RINGGATE_TEST_PANIC_PATH`) closes only that
//! connection: other connections on the same worker keep working, and new ones are served.

#[macro_use]
mod support;

use support::*;

const HOOK: (&str, &str) = ("RINGGATE_TEST_PANIC_PATH", "/boom");

/// The panicking connection ends: either closed with no bytes, or with a 500 and then closed.
fn assert_panicked_connection_closed(c: &mut Client) {
    let closed = c.read_until_close(PROMPT);
    let text = String::from_utf8_lossy(&closed.data);
    assert!(
        closed.data.is_empty() || text.starts_with("HTTP/1.1 500"),
        "after a panic expected a close (or a 500 and close), got {text:?}"
    );
}

/// One worker, one established keep-alive connection, another connection panics: the first
/// connection and new connections are still served.
fn panic_closes_only_that_connection(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).workers(1).start_with_env(driver, &[HOOK]);
    let mut survivor = gw.client();
    assert_eq!(survivor.request(&get("/ok")).status, 200);

    let mut victim = gw.client();
    victim.send(&get("/boom"));
    assert_panicked_connection_closed(&mut victim);

    let resp = survivor.request(&get("/still-ok"));
    assert_eq!(resp.status, 200, "the surviving connection broke: {}", resp.head_str());
    assert_eq!(resp.body, echo_body("GET", "/still-ok", b""));
    let fresh = gw.client().request(&get("/fresh"));
    assert_eq!(fresh.status, 200, "a new connection after the panic: {}", fresh.head_str());
}

/// Many panics in a row do not wear the worker down.
fn repeated_panics_keep_serving(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).workers(1).start_with_env(driver, &[HOOK]);
    for _ in 0..20 {
        let mut victim = gw.client();
        victim.send(&get("/boom"));
        assert_panicked_connection_closed(&mut victim);
    }
    let resp = gw.client().request(&get("/after"));
    assert_eq!(resp.status, 200, "{}", resp.head_str());
}

/// Only the exact hook path panics: a longer path is an ordinary request.
fn hook_path_is_exact(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start_with_env(driver, &[HOOK]);
    let resp = gw.client().request(&get("/boom2"));
    assert_eq!(resp.status, 200, "{}", resp.head_str());
}

both_drivers!(panic_closes_only_that_connection, repeated_panics_keep_serving, hook_path_is_exact,);
