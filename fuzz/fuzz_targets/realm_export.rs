//! Fuzzes the Keycloak realm-export loader of the dev issuer (`tw_devissuer::check_export`):
//! any input is loaded or refused with the file named, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = tw_devissuer::check_export("fuzz.json", &text) {
        assert!(e.to_string().contains("fuzz.json"), "error names no file: {e}");
    }
});
