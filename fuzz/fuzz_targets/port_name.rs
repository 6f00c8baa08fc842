//! The port-name parser never panics, and every name it accepts formats back to a name that
//! parses to the same spec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netmap_rs::PortSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = PortSpec::parse(name) {
        let again = PortSpec::parse(&spec.to_string()).expect("formatted name must parse");
        assert_eq!(again, spec, "round trip of {name:?}");
        assert!(spec.ifname.len() < 64);
    }
});
