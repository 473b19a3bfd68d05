use clap::Parser;
use dig_bootstrap::config::Config;
use dig_core::logging::{LogOutput, init_tracing};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(config.log_format, "info", LogOutput::Stdout);
    dig_bootstrap::server::run(config, dig_core::shutdown::shutdown_signal()).await?;
    Ok(())
}
