//! With the `torch` feature only: keeps `libtorch_cuda.so` linked into synthd's binaries.
//!
//! The linker drops `libtorch_cuda.so` because no symbol of it is referenced (only
//! `libtorch_cpu.so` and `libc10.so` stay), and libtorch then reports no CUDA device. Linking it
//! with `--no-as-needed` registers the CUDA backend at load time (shared/GPU.md); a libtorch
//! without CUDA simply has no such file, and CUDA is then unavailable. The rpath lets a binary
//! built here find libtorch without `LD_LIBRARY_PATH` (another machine sets it, as GPU.md says).
//! The default build does nothing here and links no libtorch at all.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    // torch-sys (`links = "tch"`) publishes the directory it linked libtorch from.
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = std::path::PathBuf::from(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
