//! Writes the CRDs as YAML: `cargo run -p dig-operator --bin crdgen` rewrites `crds/`;
//! `crdgen --stdout` prints both documents instead.

fn main() -> anyhow::Result<()> {
    let to_stdout = std::env::args().skip(1).any(|arg| arg == "--stdout");
    if to_stdout {
        print!("{}", dig_operator::crdgen::all_yaml()?);
        return Ok(());
    }
    let dir = dig_operator::crdgen::crds_dir();
    for (file, yaml) in dig_operator::crdgen::files()? {
        let path = dir.join(file);
        std::fs::write(&path, yaml)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
