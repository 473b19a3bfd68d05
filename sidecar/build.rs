//! Links `dig-sidecar` with packed relative relocations (DT_RELR) where the toolchain and the C
//! library support them.
//!
//! The binary is position independent, so every pointer in its read-only data needs a relative
//! relocation at start-up. As classic `.rela.dyn` entries they take 1.2 MB that the loader reads
//! and that then stays resident in every node; packed they take 15 KB (measured: VmRSS of an idle
//! node 1.3 MiB lower). That needs GNU ld 2.38 or lld 15 to link and glibc 2.36 to run, so a
//! probe program is linked with the option and run first; without support (Ubuntu 22.04, say) or
//! when cross-compiling, the binary is linked as before.

use std::{path::Path, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    if os == "linux" && env == "gnu" && native && packed_relocations_work() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether a PIE linked with `-z pack-relative-relocs` links and runs on this machine (a linker
/// older than the option ignores it with a warning, which is harmless).
fn packed_relocations_work() -> bool {
    let Ok(out_dir) = std::env::var("OUT_DIR") else {
        return false;
    };
    let out_dir = Path::new(&out_dir);
    let source = out_dir.join("relr_probe.c");
    let probe = out_dir.join("relr_probe");
    if std::fs::write(&source, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_string());
    let linked = Command::new(linker)
        .args(["-fPIE", "-pie", "-Wl,-z,pack-relative-relocs", "-o"])
        .arg(&probe)
        .arg(&source)
        .status()
        .is_ok_and(|status| status.success());
    linked
        && Command::new(&probe)
            .status()
            .is_ok_and(|status| status.success())
}
