//! Fuzz target for the config file: TOML into `Config`, validation, the embedded defaults,
//! and a round trip through `toml::to_string` that must give the same `Config` back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ndmpd::config::Config;

fuzz_target!(|data: &[u8]| {
    // `Config::load` reads the file as UTF-8; anything else never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut cfg) = Config::parse(text) else {
        return;
    };
    let _ = cfg.validate();
    let again = toml::to_string(&cfg).expect("a parsed config serialises");
    let back = Config::parse(&again).expect("a serialised config parses");
    assert_eq!(back, cfg, "config changed in a round trip:\n{again}");
    // As `ndmpd serve` does without a config file's devices and exports.
    cfg.apply_embedded_defaults();
    let _ = cfg.validate();
});
