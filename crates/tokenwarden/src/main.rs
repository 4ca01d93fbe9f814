//! `tokenwarden`: one binary, one subcommand per job. Everything substantial lives in the
//! library crates; this file parses arguments, sets up logging and metrics, and reports errors.

mod cli;
#[cfg(feature = "dev-issuer")]
mod demo_cmd;
#[cfg(feature = "dev-issuer")]
mod dev_issuer_cmd;
mod doctor_cmd;
mod gateway_cmd;
mod logging;
mod process;
mod registry_cmd;
mod token_cmd;
mod vault_cmd;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse_args();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code_for(&e))
        }
    }
}

/// 2 for configuration and usage problems (fix the input), 1 for everything else.
fn exit_code_for(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<tw_core::Error>() {
        Some(te)
            if matches!(
                te.kind(),
                tw_core::ErrorKind::Config | tw_core::ErrorKind::BadRequest
            ) =>
        {
            2
        }
        _ => 1,
    }
}
