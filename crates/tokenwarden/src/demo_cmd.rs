//! `tokenwarden demo`: the flags, then the demo itself (`tw_demo`) with this process's logging,
//! metrics recorder and shutdown signal.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run the story once and exit: exit code 0 only if every step behaved as expected.
    #[arg(long)]
    pub once: bool,
    /// Directory for the demo's files: the configuration files of each service, the realm
    /// export, the client secret file, the SQLite registry and the agent's token file.
    #[arg(long, default_value = "tokenwarden-demo")]
    pub dir: PathBuf,
    /// Ports: dev issuer = P, agent token API = P+10, agent proxy = P+11, sample API = P+12,
    /// gateway = P+20. 0 lets the system choose free ports.
    #[arg(long, default_value_t = 8780)]
    pub base_port: u16,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init(&tw_config::LogConfig {
        level: "warn".into(),
        ..Default::default()
    });
    let metrics = crate::process::install_metrics_recorder()?;
    let options = tw_demo::DemoOptions {
        once: args.once,
        dir: args.dir,
        base_port: args.base_port,
    };
    Ok(tw_demo::run(&options, metrics, crate::process::shutdown_signal()).await?)
}
