#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flashgate_core_fuzz::grpc_web(data));
