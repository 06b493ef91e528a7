//! `google.api.http` path templates: parsing any text, and matching any
//! request path against what parses. Input: `template\npath`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (template, path) = text.split_once('\n').unwrap_or((&text, "/"));
    cloudsec_gateway::fuzzing::path_template(template, path);
});
