//! Fuzzes the TOML front end (`tw_config::load_str`, validation included): any text gives a
//! config or an error that names the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = tw_config::load_str(text, "fuzz.toml") {
        assert!(e.to_string().contains("fuzz.toml"), "error names no file: {e}");
    }
});
