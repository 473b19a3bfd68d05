use anyhow::Context;
use dig_core::logging::{LogOutput, init_tracing};
use dig_sidecar::{
    cli,
    config::{self, Command},
};

fn main() -> anyhow::Result<()> {
    let cli = match config::resolve(std::env::args_os().collect(), &|name| {
        std::env::var(name).ok()
    }) {
        Ok(cli) => cli,
        Err(config::ConfigError::Cli(error)) => error.exit(),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    };
    dig_core::crypto::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command {
        Command::Run(args) => {
            // Logs go to stderr: the other commands print their results on stdout.
            init_tracing(args.log_format, "info", LogOutput::Stderr);
            runtime.block_on(dig_sidecar::run::run(*args))?;
        }
        Command::VerifyDns(args) => {
            let report = runtime.block_on(cli::verify_dns::verify(&args))?;
            print!("{}", report.render());
            if !report.all_ok() {
                std::process::exit(1);
            }
        }
        Command::Status(args) if args.watch => {
            runtime.block_on(cli::watch::watch(&args))?;
        }
        Command::Status(args) => {
            let status = runtime
                .block_on(cli::status::fetch(&args))
                .with_context(|| format!("reading the node's state from {}", args.api))?;
            if args.json {
                let all = serde_json::json!({
                    "health": status.health,
                    "ready": status.ready,
                    "connections": status.connections,
                });
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                print!("{}", cli::status::render(&status));
            }
            if !status.is_ready {
                std::process::exit(3);
            }
        }
        Command::Identity(args) => {
            println!("{}", cli::identity::peer_id(&args)?);
        }
    }
    Ok(())
}
