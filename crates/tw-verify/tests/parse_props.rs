//! Property tests: `parse_unverified` never panics and never accepts what it must not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use tw_verify::{Check, parse_unverified};

fn b64(s: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_strings_never_panic(s in ".{0,600}") {
        let _ = parse_unverified(&s, 512);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = parse_unverified(&s, 512);
    }

    #[test]
    fn three_random_segments_never_panic(
        h in proptest::collection::vec(any::<u8>(), 0..200),
        p in proptest::collection::vec(any::<u8>(), 0..200),
        sig in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let t = format!("{}.{}.{}", b64(&h), b64(&p), b64(&sig));
        if let Ok(j) = parse_unverified(&t, 4096) {
            // Whatever got through has a supported alg and objects for header and claims.
            prop_assert!(j.alg().is_some());
            prop_assert!(!sig.is_empty());
        }
    }

    #[test]
    fn json_shaped_segments_never_panic(
        header in r#"\{("(alg|kid|typ|crit|jku|jwk)":("[A-Za-z0-9+/.]{0,12}"|[0-9]{1,3}|null|true|\[\]|\["b64"\]),?){0,5}\}"#,
        payload in r#"\{("(iss|exp|nbf|iat|aud|azp|typ|sub)":("[a-z]{0,5}"|-?[0-9]{1,12}(\.[0-9]{1,3})?|null|\[("[a-z]{0,3}",?){0,3}\]|\{\}),?){0,8}\}"#,
    ) {
        let t = format!("{}.{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()), b64(b"sig"));
        match parse_unverified(&t, 4096) {
            Ok(j) => {
                prop_assert!(j.alg().is_some());
                prop_assert!(!j.header().contains_key("crit"));
            }
            Err(e) => prop_assert!(matches!(
                e.check(),
                Check::Format | Check::Header | Check::Algorithm
            )),
        }
    }

    #[test]
    fn oversized_tokens_are_refused_by_size(extra in 1usize..100) {
        let t = "a".repeat(256 + extra);
        prop_assert_eq!(parse_unverified(&t, 256).unwrap_err().check(), Check::Size);
    }

    #[test]
    fn any_non_base64url_char_is_refused(pos in 0usize..20, c in prop::sample::select(vec!['=', '+', '/', ' ', '\n', '\t', '\0', 'é', '%'])) {
        let good = format!("{}.{}.{}", b64(br#"{"alg":"RS256"}"#), b64(br#"{"iss":"x"}"#), b64(b"signature"));
        let mut chars: Vec<char> = good.chars().collect();
        let i = pos % chars.len();
        if chars[i] == '.' { return Ok(()); }
        chars.insert(i, c);
        let t: String = chars.into_iter().collect();
        prop_assert_eq!(parse_unverified(&t, 4096).unwrap_err().check(), Check::Format);
    }
}
