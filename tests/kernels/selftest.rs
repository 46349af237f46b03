use qwen3_vl_webgpu::kernels::selftest::run;

use crate::gpus;

/// The browser's `selftest()` cases pass here under both profiles (the minimum one is what
/// SwiftShader gives: no f16, no subgroups, 256 invocations), and cover every WGSL file.
#[test]
fn selftest_passes_on_both_profiles() {
    for gpu in gpus() {
        let cases = pollster::block_on(run(gpu)).unwrap();
        for c in &cases {
            eprintln!("{:?} {}: {:e} (tol {:e})", gpu.caps.profile, c.name, c.max_err, c.tol);
        }
        let failed: Vec<_> = cases.iter().filter(|c| !c.ok()).collect();
        assert!(failed.is_empty(), "{:?}: {failed:?}", gpu.caps.profile);
        let shaders = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders")).unwrap();
        for entry in shaders {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "wgsl") {
                let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
                assert!(cases.iter().any(|c| c.name.starts_with(&format!("{stem}:"))), "no selftest case for shaders/{stem}.wgsl");
            }
        }
    }
}
