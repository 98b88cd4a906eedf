#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| doorward_fuzz::qr_parse(data));
