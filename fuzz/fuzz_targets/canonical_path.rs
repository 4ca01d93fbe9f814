//! Fuzzes the gateway's one canonical request path (`tw_http::path::canonicalize`) under every
//! policy: never panics; what it accepts is absolute, has no dot segments, no control
//! characters, and is a fixed point (canonicalizing the forwarded form gives the same path), so
//! rules and the upstream see one path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tw_http::path::{PathPolicy, canonicalize};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let policy = PathPolicy {
        allow_encoded_slash: flags & 1 != 0,
        allow_backslash: flags & 2 != 0,
        allow_semicolon: flags & 4 != 0,
        allow_encoded_percent: flags & 8 != 0,
        case_insensitive: flags & 16 != 0,
    };
    let raw = String::from_utf8_lossy(rest);
    for candidate in [raw.to_string(), format!("/{raw}")] {
        let Ok(path) = canonicalize(&candidate, policy) else {
            continue;
        };
        let encoded = path.encoded();
        assert!(encoded.starts_with('/'), "not absolute: {encoded:?}");
        assert!(
            !encoded.split('/').any(|s| s == "." || s == ".."),
            "dot segment left: {encoded:?}"
        );
        assert!(
            !path.decoded().chars().any(char::is_control),
            "control character in {:?}",
            path.decoded()
        );
        let again = canonicalize(encoded, policy)
            .unwrap_or_else(|r| panic!("its own output {encoded:?} refused: {r:?}"));
        assert_eq!(again.encoded(), encoded, "not a fixed point");
        assert_eq!(again.decoded(), path.decoded(), "not a fixed point");
        assert_eq!(again.matching(), path.matching(), "not a fixed point");
    }
});
