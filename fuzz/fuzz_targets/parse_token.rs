//! Fuzzes the token parser: checks 1-3 (size, shape, header) of `tw_verify::parse_unverified`,
//! and the duplicate-rejecting JSON parser under it. Never panics, never accepts a token with an
//! unsupported `alg` or a `crit` header.
//!
//!     cargo +nightly fuzz run parse_token -- -max_total_time=60
#![no_main]

use libfuzzer_sys::fuzz_target;
use tw_verify::{StrictValue, parse_unverified};

fuzz_target!(|data: &[u8]| {
    // The raw bytes as JSON (header/payload parser).
    let _ = serde_json::from_slice::<StrictValue>(data);

    let text = String::from_utf8_lossy(data);
    for max in [64, 4096, 16 * 1024] {
        if let Ok(jwt) = parse_unverified(&text, max) {
            assert!(text.len() <= max);
            assert!(jwt.alg().is_some(), "accepted an unsupported alg");
            assert!(!jwt.header().contains_key("crit"), "accepted crit");
            assert_eq!(text.matches('.').count(), 2);
            assert!(jwt.signing_input().len() < text.len());
            // What inspect shows: decoded parts and registered claims.
            let _ = jwt.registered();
            let _ = (jwt.kid(), jwt.header_typ(), jwt.claims().len());
        }
    }
    // Tokens built around the input, so the fuzzer reaches the JSON and header checks quickly.
    use base64::Engine as _;
    let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let split = data.len() / 2;
    let token = format!("{}.{}.c2ln", enc(&data[..split]), enc(&data[split..]));
    let _ = parse_unverified(&token, 16 * 1024);
    let token = format!("{}.{}.c2ln", enc(br#"{"alg":"RS256"}"#), enc(data));
    let _ = parse_unverified(&token, 16 * 1024);
    let token = format!("{}.{}.c2ln", enc(data), enc(br#"{"iss":"x","exp":1}"#));
    let _ = parse_unverified(&token, 16 * 1024);
});
